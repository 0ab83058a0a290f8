"""`stepsage report EXECUTION_ARN [--out DIR]`: one execution's run report, as HTML with PNG plots."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from stepsage import arguments


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an execution's run report (HTML with plots)",
        description=__doc__,
    )
    parser.add_argument(
        "execution_arn",
        metavar="EXECUTION_ARN",
        type=arguments.execution_arn,
        help=f"the Step Functions execution ({arguments.EXECUTION_ARN_SHAPE})",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<execution name>)")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="AWS endpoint, e.g. http://127.0.0.1:4566 for the local cloud (default: $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    parser.add_argument(
        "--samples",
        type=arguments.non_negative_int,
        default=16,
        help="test images to send to the endpoint (0: none; default 16)",
    )
    parser.set_defaults(func=cmd_report)


def default_out_dir(execution_arn: str) -> Path:
    return Path("reports") / execution_arn.rsplit(":", 1)[-1]


def cmd_report(args: argparse.Namespace) -> int:
    # matplotlib and the collectors load only when a report is asked for.
    from stepsage.report.builder import build_report
    from stepsage.report.clients import aws_clients

    out_dir = arguments.output_folder(args.out or default_out_dir(args.execution_arn))
    # AWS errors (no credentials, no endpoint, no such execution) reach the CLI's boundary: one line, exit 2.
    path = build_report(
        args.execution_arn,
        out_dir,
        clients=aws_clients(args.endpoint_url, args.region),
        samples=args.samples,
    )
    print(path)
    return 0
