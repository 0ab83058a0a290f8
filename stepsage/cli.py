"""The `stepsage` command line: each subcommand's module adds its own parser and runs itself."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    parser = argparse.ArgumentParser(
        prog="stepsage",
        description="An image dataset in S3 becomes a tuned, checked, deployed classifier behind a URL: "
        "on AWS with `sam deploy`, or on this machine with `stepsage local`.",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
