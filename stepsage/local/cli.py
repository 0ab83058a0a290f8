"""`stepsage local up | run | build`: serve the local cloud, or run one dataset through it end to end."""

from __future__ import annotations

import argparse
import faulthandler
import functools
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from contracts import datasets, images
from stepsage import arguments
from stepsage.local.children import kill_children
from stepsage.local.cloud import DEFAULT_PORT, CloudSettings, LocalCloud
from stepsage.local.progress import ProgressPrinter
from stepsage.report.clients import ClientFactory
from stepsage.report.collect import read_execution, read_tar_members
from stepsage.report.history import TRAINING_RESOURCE, TUNING_RESOURCE
from stepsage.transfers import TransferProgress


def add_parser(subparsers: Any) -> None:
    local = subparsers.add_parser("local", help="the local cloud: the whole pipeline on this machine")
    commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="serve the local cloud until Ctrl-C")
    _common(up, default_port=DEFAULT_PORT)
    up.add_argument("--json", action="store_true", help="print the settings as one JSON line, then serve")
    up.set_defaults(func=cmd_up)

    run = commands.add_parser("run", help="run one dataset (a zip or a folder) through the pipeline")
    _common(run, default_port=0)
    run.add_argument("dataset", type=Path, help="an ImageFolder dataset: a .zip or a folder")
    run.add_argument("--name", help="dataset name (default: the file or folder name)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--serve", action="store_true", help="keep serving the inference URL after the run")
    run.add_argument(
        "--timeout",
        type=arguments.positive_float,
        default=3600,
        help="seconds to wait for the run (default 3600)",
    )
    run.add_argument(
        "--report-dir", type=Path, help="where the run report goes (default reports/<execution>)"
    )
    run.add_argument("--no-report", action="store_true", help="skip the HTML run report")
    run.set_defaults(func=cmd_run)

    build = commands.add_parser("build", help="build every Lambda for the local runtime (cached)")
    build.set_defaults(func=cmd_build)


def _common(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--port",
        type=arguments.port,
        default=default_port,
        help=f"gateway port (default {default_port or 'free'})",
    )
    parser.add_argument(
        "--url-port", type=arguments.port, default=0, help="Function URL port (default: a free one)"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, checked against template.yaml's Parameters and Rules",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--time-scale",
        type=arguments.positive_float,
        default=0.1,
        help="scale of Wait states, Retry intervals and job polling (default 0.1: a local endpoint is "
        "up in seconds, so the state machine's 30 s waits shrink to 3 s)",
    )


def _settings(args: argparse.Namespace) -> CloudSettings:
    overrides = arguments.parameter_overrides(getattr(args, "parameter", []))
    return CloudSettings(
        port=args.port, function_url_port=args.url_port, parameters=overrides, time_scale=args.time_scale
    )


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the cloud cleanly. SIGINT is set explicitly: a shell starts background
    jobs with it ignored, and Python then leaves it ignored, so `make demo &` could not be interrupted."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck cloud is waiting for.
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def cmd_build(args: argparse.Namespace) -> int:
    cloud = LocalCloud(CloudSettings(port=0))
    cloud.build(progress=_log)
    return 0


def _stop(cloud: LocalCloud) -> None:
    """Stop the cloud (it has a deadline of its own); a second Ctrl-C cuts the wait short."""
    try:
        cloud.stop()
    except KeyboardInterrupt:
        kill_children()


def cmd_up(args: argparse.Namespace) -> int:
    cloud = LocalCloud(_settings(args))
    _stop_on_signals()
    try:
        cloud.build(progress=None if args.json else _log)
        cloud.start()
        if not args.quiet:
            cloud.add_listener(ProgressPrinter(stream=sys.stderr))
        info = cloud.info()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(_up_banner(info), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(cloud)


def _up_banner(info: dict[str, Any]) -> str:
    url = info["endpoint_url"]
    return "\n".join(
        [
            f"stepsage local cloud on {url}",
            f"  data bucket      {info['data_bucket']}",
            f"  state machine    {info['state_machine_arn']}",
            f"  inference URL    {info['function_url']}",
            "",
            f"  export AWS_ENDPOINT_URL={url} AWS_REGION=us-east-1",
            "  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
            f"  aws s3 cp mydata.zip s3://{info['data_bucket']}/datasets/",
            f"  aws stepfunctions list-executions --state-machine-arn {info['state_machine_arn']}",
            "Ctrl-C stops it.",
        ]
    )


def dataset_name(path: Path, explicit: str | None = None) -> str:
    """The dataset's name under datasets/: `--name` as given, or one derived from the file or folder name
    within the grammar every unit shares (contracts.datasets), so the run is reachable at POST /<name>."""
    if explicit is not None:
        return datasets.check_name(explicit)
    raw = path.name[: -len(datasets.ARCHIVE_SUFFIX)] if path.name.lower().endswith(".zip") else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).lstrip("._-")[: datasets.NAME_MAX_LENGTH].lower()
    if not datasets.is_valid_name(name):
        raise datasets.InvalidDatasetName(f"cannot derive a dataset name from {path}; pass --name")
    return name


def upload_dataset(cloud: LocalCloud, path: Path, name: str, quiet: bool = False) -> str:
    """Upload as a user would: a zip under datasets/, or a folder closed by a _READY marker."""
    s3 = cloud.client("s3")
    bucket = cloud.data_bucket
    if path.is_file():
        key = datasets.archive_key(name)
        progress = None if quiet else TransferProgress(f"uploading {path.name}", path.stat().st_size)
        s3.upload_file(str(path), bucket, key, Callback=progress)
        return key
    if not path.is_dir():
        raise FileNotFoundError(f"no such dataset: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    progress = (
        None if quiet else TransferProgress(f"uploading {path.name}/", sum(f.stat().st_size for f in files))
    )
    for file in files:
        key = datasets.folder_prefix(name) + file.relative_to(path).as_posix()
        s3.upload_file(str(file), bucket, key, Callback=progress)
    key = datasets.ready_key(name)
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    return key


def wait_for_execution(cloud: LocalCloud, key: str, after: float, timeout: float = 120.0) -> str:
    """The ARN of the execution this upload started (the start Lambda runs asynchronously): the one whose
    input names the uploaded key, among those started since the upload, never merely the newest."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        listed = cloud.stepfunctions.handle("ListExecutions", {"stateMachineArn": cloud.state_machine_arn})
        for summary in listed["executions"]:
            arn = str(summary["executionArn"])
            if arn in seen or _epoch(summary["startDate"]) < after - 1:
                continue
            seen.add(arn)
            described = cloud.stepfunctions.handle("DescribeExecution", {"executionArn": arn})
            if json.loads(described.get("input") or "{}").get("key") == key:
                return arn
        time.sleep(0.2)
    raise TimeoutError(f"the upload of {key} started no execution: check .local-cloud/logs/lambda/")


def _epoch(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def summarize(
    clients: ClientFactory, execution_arn: str, dataset: str, function_url: str | None = None
) -> dict[str, Any]:
    """Execution, best hyperparameters, test accuracy and endpoint. The jobs and the endpoint are the ones
    the execution's history names (read as the run report reads it), so another run's jobs never show."""
    run = read_execution(clients("stepfunctions"), execution_arn)
    summary: dict[str, Any] = {
        "execution_arn": execution_arn,
        "status": run.execution["status"],
        "dataset": dataset,
        "function_url": function_url,
    }
    if run.execution.get("error") or run.end.get("error"):
        summary["error"] = run.execution.get("error") or run.end.get("error")
        summary["cause"] = run.execution.get("cause") or run.end.get("cause")
    sagemaker = clients("sagemaker")
    tuning = run.jobs.get(TUNING_RESOURCE)
    if tuning is not None:
        described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning.name)
        best = described.get("BestTrainingJob") or {}
        summary["tuning_job"] = tuning.name
        summary["best_training_job"] = best.get("TrainingJobName")
        summary["best_hyperparameters"] = best.get("TunedHyperParameters")
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        summary["best_objective"] = (
            {objective.get("MetricName"): objective.get("Value")} if objective else None
        )
    final = run.jobs.get(TRAINING_RESOURCE)
    if final is not None:
        described = sagemaker.describe_training_job(TrainingJobName=final.name)
        summary["final_training_job"] = final.name
        artifact = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        summary["model_artifact"] = artifact
        if artifact:
            found = read_tar_members(clients("s3"), artifact, ["evaluation.json"])
            if "evaluation.json" in found:
                summary["test_accuracy"] = json.loads(found["evaluation.json"]).get("accuracy")
    deployment = run.document.get("deployment")
    if isinstance(deployment, dict) and deployment.get("endpoint_name"):
        endpoint = sagemaker.describe_endpoint(EndpointName=deployment["endpoint_name"])
        summary["endpoint"] = endpoint["EndpointName"]
        summary["endpoint_status"] = endpoint["EndpointStatus"]
    return summary


def _print_summary(summary: dict[str, Any], state_times: dict[str, float]) -> None:
    rows = [
        ("execution", summary.get("execution_arn")),
        ("status", summary.get("status")),
        ("error", f"{summary.get('error')}: {summary.get('cause')}" if summary.get("error") else None),
        ("best hyperparameters", json.dumps(summary.get("best_hyperparameters"))),
        ("best objective", json.dumps(summary.get("best_objective"))),
        (
            "test accuracy",
            f"{summary['test_accuracy']:.4f}" if summary.get("test_accuracy") is not None else None,
        ),
        ("endpoint", summary.get("endpoint")),
        ("inference URL", summary.get("function_url")),
        ("report", summary.get("report")),
    ]
    print("\nstepsage run summary")
    for label, value in rows:
        if value not in (None, "null"):
            print(f"  {label:<22}{value}")
    if state_times:
        print("  time per state")
        for state, seconds in state_times.items():
            print(f"    {state:<20}{seconds:7.1f} s")
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    # Everything a user typed is checked before the cloud builds or starts: a mistake costs no wait.
    arguments.dataset_path(args.dataset)
    name = dataset_name(args.dataset, args.name)
    if args.report_dir is not None:
        arguments.output_folder(args.report_dir)
    cloud = LocalCloud(_settings(args))
    _stop_on_signals()
    printer = ProgressPrinter(stream=sys.stderr)
    try:
        cloud.build(progress=None if args.quiet else _log)
        cloud.start()
        if not args.quiet:
            cloud.add_listener(printer)
        started = time.time()
        key = upload_dataset(cloud, args.dataset, name, quiet=args.quiet)
        if not args.quiet:
            _log(f"uploaded s3://{cloud.data_bucket}/{key}")
        arn = wait_for_execution(cloud, key, started)
        cloud.stepfunctions.wait(arn, timeout=args.timeout)
        summary = summarize(functools.cache(cloud.client), arn, name, cloud.function_url)
        summary["state_seconds"] = printer.state_times()
        summary["wall_seconds"] = round(time.time() - started, 1)
        if not args.no_report:
            summary.update(_write_report(cloud, arn, args.report_dir))
        if args.json:
            print(json.dumps(summary, default=str), flush=True)
        else:
            _print_summary(summary, printer.state_times())
        succeeded = summary["status"] == "SUCCEEDED"
        if succeeded and args.serve and cloud.function_url:
            _serve_until_interrupted(cloud, name, args.dataset)
        return 0 if succeeded else 1
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(cloud)


def _write_report(cloud: LocalCloud, execution_arn: str, report_dir: Path | None) -> dict[str, str]:
    """The run report, through the same AWS APIs it uses on AWS; a report problem never fails the run."""
    from botocore.exceptions import BotoCoreError, ClientError

    from stepsage.report.builder import build_report

    out = report_dir or Path("reports") / execution_arn.rsplit(":", 1)[-1]
    _log(f"writing the run report to {out}/ ...")
    try:
        return {"report": str(build_report(execution_arn, out, clients=cloud.client))}
    except (BotoCoreError, ClientError, OSError) as error:
        return {"report_error": f"{type(error).__name__}: {error}"}


def _serve_until_interrupted(cloud: LocalCloud, name: str, dataset: Path) -> None:
    """Serve the run's URL until Ctrl-C, which here ends a successful run normally."""
    url = f"{cloud.function_url}{name}"
    example = _example_image(dataset) or "some-image.jpg"
    media_type = images.media_type_for_filename(example)
    print(f"\nServing the inference URL at {url}  (open it in a browser; Ctrl-C stops it)", flush=True)
    print(f"  curl -s -H 'Content-Type: {media_type}' --data-binary @{example} '{url}?top_k=3'", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped serving", flush=True)


def _example_image(dataset: Path) -> str | None:
    """A held-out image to try, when the dataset is a folder beside the zip (as the demo's is)."""
    folder = dataset.with_suffix("") if dataset.suffix == ".zip" else dataset
    found = sorted(p for p in (folder / "test").glob("*/*") if images.format_for_filename(p.name))
    return str(found[0]) if found else None
