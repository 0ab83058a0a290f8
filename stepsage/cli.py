"""The `stepsage` command line: each subcommand's module adds its own parser and runs itself."""

from __future__ import annotations

import argparse
import importlib
import sys

from stepsage.user_errors import OneLineArgumentParser, report

# Subcommand name -> module with `add_parser(subparsers)`; the module sets `func` on its parser.
# Modules load lazily, so `stepsage --help` never imports torch.
SUBCOMMANDS = {
    "sample": "stepsage.sample",
    "train-local": "stepsage.train_local",
    "local": "stepsage.local.cli",
    "report": "stepsage.report.cli",
    "aws": "stepsage.aws.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="stepsage",
        description="An image dataset in S3 becomes a tuned, checked, deployed classifier behind a URL: "
        "on AWS with `sam deploy`, or on this machine with `stepsage local`. A mistake on the command line "
        "gets one line on stderr and exit status 2; an internal error gets exit status 1.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of an error (also accepted after the subcommand)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only tolerate the subcommand's own module being absent from this install, nothing deeper.
            if error.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Each parser records its own prog (`stepsage local run`), so an error line names the command."""
    parser.set_defaults(command_prog=parser.prog)
    for child in _children(parser):
        _name_commands(child)


def _children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [
        child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()
    ]


def _parser_named(parser: argparse.ArgumentParser, prog: str) -> argparse.ArgumentParser:
    if parser.prog == prog:
        return parser
    for child in _children(parser):
        if prog.startswith(child.prog):
            return _parser_named(child, prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error ends here: a user's mistake as one line and exit 2, anything else as a bug
    (exit 1); `--debug` adds the traceback."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    # `--debug` anywhere before a `--` (after the subcommand too, where users type it).
    end = tokens.index("--") if "--" in tokens else len(tokens)
    debug = "--debug" in tokens[:end]
    if debug:
        tokens = [t for i, t in enumerate(tokens) if not (t == "--debug" and i < end)]
    parser = build_parser()
    args, unknown = parser.parse_known_args(tokens)
    if unknown:
        # Said by the subcommand that got them, as argparse's root parser would not.
        _parser_named(parser, args.command_prog).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return report(getattr(args, "command_prog", "stepsage"), error, debug)


if __name__ == "__main__":
    sys.exit(main())
