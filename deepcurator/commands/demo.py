"""Not built yet."""

from __future__ import annotations

import argparse

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This stage takes no options yet."""


def run(args: argparse.Namespace, cfg: Config) -> int:
    print("deepcurator demo: not built yet")
    return 1
