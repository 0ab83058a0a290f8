"""`stepsage report EXECUTION_ARN [--out DIR]`: one execution's run report, as HTML with PNG plots."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an execution's run report (HTML with plots)",
        description=__doc__,
    )
    parser.add_argument("execution_arn", metavar="EXECUTION_ARN", help="the Step Functions execution")
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<execution name>)")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="AWS endpoint, e.g. http://127.0.0.1:4566 for the local cloud (default: $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    parser.add_argument(
        "--samples", type=int, default=16, help="test images to send to the endpoint (0: none; default 16)"
    )
    parser.set_defaults(func=cmd_report)


def default_out_dir(execution_arn: str) -> Path:
    return Path("reports") / execution_arn.rsplit(":", 1)[-1]


def cmd_report(args: argparse.Namespace) -> int:
    # matplotlib and the collectors load only when a report is asked for.
    from botocore.exceptions import BotoCoreError, ClientError

    from stepsage.report.builder import build_report
    from stepsage.report.clients import aws_clients

    out_dir = args.out or default_out_dir(args.execution_arn)
    try:
        path = build_report(
            args.execution_arn,
            out_dir,
            clients=aws_clients(args.endpoint_url, args.region),
            samples=args.samples,
        )
    except (ClientError, BotoCoreError) as e:
        print(f"error: cannot read execution {args.execution_arn}: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
