"""The ``ge2e`` command. Each subcommand lives in its own module of this package and exposes
``register(subparsers)``; heavy imports happen inside the command functions so ``ge2e --help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import pkgutil
import sys
import warnings

from ge2e import __version__
from ge2e.errors import Ge2eError, LowConfidenceSpeech


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ge2e", description="GE2E speaker verification toolkit.")
    parser.add_argument("--version", action="version", version=f"ge2e {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown option is reported by its subcommand, with that command's usage
    and the closest option it has (argparse alone prints the top-level usage, which does not list it)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        options = list(command._option_string_actions)
        guesses = [difflib.get_close_matches(u.split("=", 1)[0], options, n=1) for u in unknown]
        hint = "".join(f"; did you mean {g[0]}?" for g in guesses if g)
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear error line and a non-zero exit status on any expected failure (1, or the
    command's own ``error_status``: 2 for ``verify``, whose 1 means a rejected voice)."""
    args = parse(build_parser(), argv)
    handler = logging.StreamHandler()
    # the commands list the files they skip themselves: embed_files' warning per file would report each twice
    handler.addFilter(lambda record: record.name != "ge2e.inference" or record.levelno >= logging.ERROR)
    # other packages log at WARNING unless -v: their INFO lines (matplotlib's "generated new fontManager") are
    # not about the user's work; ge2e's own INFO lines are
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s", handlers=[handler]
    )
    logging.getLogger("ge2e").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, *rest) -> None:  # type: ignore[no-untyped-def]
                # a low-confidence score is about the user's file: one line, like an error
                if issubclass(category, LowConfidenceSpeech):
                    print(f"ge2e {args.command}: warning: {message}", file=sys.stderr)
                else:
                    shown(message, category, *rest)

            warnings.showwarning = show
            return int(args.func(args) or 0)
    except Ge2eError as exc:
        print(f"ge2e {args.command}: error: {exc}", file=sys.stderr)
        return getattr(args, "error_status", 1)
    except KeyboardInterrupt:
        print(f"ge2e {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
