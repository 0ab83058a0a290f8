"""`stepsage aws ...`: teardown of a deployed stack's run-time resources and bucket contents."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stepsage import arguments
from stepsage.aws.teardown import Clients, StackNotFoundError, TeardownError, TeardownReport, teardown


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("aws", help="manage the AWS deployment (sam deploy / sam delete helpers)")
    commands = parser.add_subparsers(dest="aws_command", required=True, metavar="AWS_COMMAND")

    down = commands.add_parser(
        "teardown",
        help="delete the stack's endpoints, models and endpoint configs and empty its buckets",
        description=(
            "Stops running pipeline executions, deletes the SageMaker endpoints, endpoint configs and models "
            "tagged stepsage:stack=NAME, and deletes every object version and delete marker in the stack's "
            "buckets, so that `sam delete --stack-name NAME` succeeds."
        ),
    )
    down.add_argument(
        "--stack", required=True, metavar="NAME", type=arguments.stack_name, help="CloudFormation stack name"
    )
    down.add_argument("--region", help="AWS region (default: the configured one)")
    down.add_argument("--profile", help="AWS profile (default: the configured one)")
    down.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    down.add_argument(
        "--delete-stack", action="store_true", help="also delete the stack and wait until it is gone"
    )
    down.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    down.add_argument("--json", action="store_true", help="print the report as one JSON object")
    down.set_defaults(func=run_teardown)


def _confirmed(stack: str) -> bool:
    answer = input(
        f"Delete the endpoints, models and endpoint configs of stack {stack!r} and every object in its "
        "buckets? Type the stack name to confirm: "
    )
    return answer.strip() == stack


def _print_report(report: TeardownReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    print(f"stack {report.stack}:")
    print(f"  executions stopped: {len(report.stopped_executions)}")
    for label, names in (
        ("endpoints", report.deleted_endpoints),
        ("endpoint configs", report.deleted_endpoint_configs),
        ("models", report.deleted_models),
    ):
        print(f"  {label} {verb}: {len(names)}" + (f" ({', '.join(names)})" if names else ""))
    for bucket, count in report.emptied_buckets.items():
        print(f"  s3://{bucket}: {count} object versions and delete markers {verb}")
    if report.aborted_uploads:
        print(f"  unfinished multipart uploads aborted: {report.aborted_uploads}")
    if report.stack_deleted:
        print("  stack deleted")
    elif not report.dry_run:
        print(f"Now run: sam delete --stack-name {report.stack}")


def run_teardown(args: argparse.Namespace) -> int:
    import boto3

    if not (args.yes or args.dry_run or args.json) and not _confirmed(args.stack):
        print("Not confirmed; nothing deleted.", file=sys.stderr)
        return 1
    session = boto3.Session(region_name=args.region, profile_name=args.profile)
    try:
        report = teardown(
            args.stack, Clients.from_session(session), dry_run=args.dry_run, delete_stack=args.delete_stack
        )
    except StackNotFoundError:
        raise  # the user named a stack that is not there: the CLI's one line, exit 2
    except TeardownError as e:
        print(f"stepsage aws teardown: {e}. Run the command again to continue.", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True), flush=True)
    else:
        _print_report(report)
    return 0
