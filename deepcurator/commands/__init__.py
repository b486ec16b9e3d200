"""The commands: one module per ``deepcurator`` subcommand, each a thin layer with
``add_arguments(parser)`` and ``run(args, cfg) -> int`` that calls a stage and prints its
summary. Helpers shared by the commands' argument parsers live here."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``low`` to ``high`` (inclusive; no upper bound
    when ``high`` is None), else a one-line error saying the range."""
    allowed = f"at least {low}" if high is None else f"between {low} and {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    return parse
