"""The ``deepcurator`` command: one subcommand per stage.

Each subcommand lives in ``deepcurator/commands/<name>.py`` as a thin layer with
``add_arguments(parser)`` and ``run(args, cfg) -> int``; those modules import nothing heavy
at the top, so ``--help`` is instant. Errors a user can act on (:class:`DeepCuratorError`,
and a bad flag) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from deepcurator import __version__
from deepcurator.errors import DeepCuratorError

COMMANDS: dict[str, str] = {
    "dataset": "rebuild dataset.csv from a Discogs releases dump and the Discogs API",
    "labels": "score Discogs items and write labels.csv (top N good, bottom N not-good)",
    "download": "download every labelled YouTube id as an mp3 into the store",
    "process": "turn every stored mp3 into log-mel features",
    "train": "train the CNN on the stored features and write a run",
    "evaluate": "re-evaluate a saved run on its test split",
    "export": "export a run into model/, the model served when the store has none",
    "serve": "run the prediction server (--production: gunicorn with the shipped settings)",
    "rate": "score audio files or folders offline (a whole library: resumable, every core)",
    "demo-corpus": "generate a synthetic electronic-music corpus and its dataset.csv",
    "demo": "run the whole pipeline offline on a generated corpus",
    "config": "print the effective configuration and where each value came from",
}

STORE_WRITERS = {"labels", "download", "process", "train", "evaluate"}


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error (the
    usage itself is in ``--help``); subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="deepcurator",
        description="Learn what will be sought-after on Discogs from the sound alone.",
    )
    parser.add_argument("--version", action="version", version=f"deepcurator {__version__}")
    config_help = ("configuration file (default: $DEEPCURATOR_CONFIG, else ./config.yml, else config.yml in the "
                   "user's config folder; `deepcurator config` shows which)")
    parser.add_argument("--config", metavar="FILE", help=config_help)
    # `--config` also after the command (`create_labels.py --config FILE`); SUPPRESS keeps a
    # value given before the command when none follows it.
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"deepcurator.commands.{name.replace('-', '_')}")
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                             parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module, _parser=cmd)
    return parser


def configure_logging() -> None:
    """Library code logs; the command shows the package's INFO lines (a stage's progress
    notes) and everyone's warnings on standard error, as plain lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logging.getLogger("deepcurator").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepcurator`` console script; returns the exit status."""
    from deepcurator import config

    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise to a user; its
    # warnings and errors still show. Set before any stage imports TensorFlow.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_logging()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand, whose --help lists its flags
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        cfg = config.load(args.config)
        if args.command in STORE_WRITERS:  # the leftovers of a stage killed with kill -9
            from deepcurator import scratch
            from deepcurator.store import open_store

            open_store(cfg).remove_stale_temps()
            scratch.remove_stale()
        return int(args._module.run(args, cfg) or 0)
    except DeepCuratorError as exc:
        print(f"deepcurator {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepcurator {args.command}: interrupted; rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (`deepcurator config | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("tensorflow", "keras"):
            _internal_error(args.command)
        print(f"deepcurator {args.command}: error: {no_tensorflow()}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a bug, not bad input: show it all, then exit for sure
        _internal_error(args.command)
    return 1  # not reached: _internal_error exits


def no_tensorflow() -> str:
    """Why TensorFlow is missing and what to do, in one line (the stages that need no model
    work without it: dataset, labels, download, process, demo-corpus, config)."""
    import platform

    why = "TensorFlow is not installed in this environment"
    if sys.platform == "darwin" and platform.machine() == "x86_64":
        why += " (TensorFlow publishes no wheel for macOS on Intel after 2.16, and 2.16 needs numpy < 2)"
    return f"{why}; this command needs it: see the README, \"Install\""


def _internal_error(command: str) -> NoReturn:
    """A bug, not bad input: show it all, then exit for sure."""
    traceback.print_exc()
    print(f"deepcurator {command}: internal error (above); rerun resumes where it stopped", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal exit: after an error inside tf.data, interpreter shutdown can wait
    # forever on TensorFlow's threads, and a stage must never hang.
    os._exit(1)


def script(command: str) -> None:
    """Run one subcommand as a top-level script (``create_labels.py`` and friends)."""
    raise SystemExit(main([command, *sys.argv[1:]]))
