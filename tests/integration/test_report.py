"""`stepsage report` on a real training run: moto S3 for artifacts, Stubber for Step Functions/SageMaker."""

from __future__ import annotations

import datetime
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from shapes_dataset import draw_shape

from stepsage.report import builder
from stepsage.report.collect import Collector, epochs_from_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE = REPO_ROOT / "training_code"
CLASSES = ("001.circle", "002.square", "003.cross")
FAST = [
    "--weights",
    "none",
    "--model",
    "resnet18",
    "--image-size",
    "16",
    "--batch-size",
    "8",
    "--seed",
    "7",
    "--workers",
    "0",
]
REGION = "us-east-1"
ACCOUNT = "123456789012"
SAGEMAKER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
EXECUTION = "a1b2c3d4e5"
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepsage-pipeline:{EXECUTION}"
ARTIFACTS = "stepsage-artifacts-test"
DATA = "stepsage-data-test"
TUNING_JOB = f"{EXECUTION}-h0"
FINAL_JOB = f"{EXECUTION}-final-0"
ENDPOINT = "stepsage-shapes"
# Trials: (optimizer, lr, extra arguments). The last asks for an image size train.py refuses: a real failure.
TRIALS: tuple[tuple[str, str, list[str]], ...] = (
    ("adamw", "0.0003", []),
    ("sgd", "0.05", []),
    ("adamw", "0.003", []),
    ("adamw", "0.001", ["--image-size", "8"]),
)
T0 = datetime.datetime(2026, 11, 20, 9, 0, 0, tzinfo=datetime.UTC)

sys.path.insert(0, str(TRAINING_CODE))
import metrics as training_metrics  # noqa: E402

# ---------------------------------------------------------------------------------------------- real run


def _container_env(job: Path, data: Path, test: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(
        {
            "SM_CHANNEL_TRAIN": str(data / "train"),
            "SM_CHANNEL_VALID": str(data / "valid"),
            "SM_MODEL_DIR": str(job / "model"),
            "SM_OUTPUT_DATA_DIR": str(job / "output" / "data"),
            "SM_NUM_CPUS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if test:
        env["SM_CHANNEL_TEST"] = str(data / "test")
    return env


TRIAL_RUNNER = """
import json, os, sys, time
sys.path.insert(0, {code!r})
import train
for index, (optimizer, lr, extra) in enumerate({trials!r}):
    job = os.path.join({root!r}, f"trial-{{index}}")
    os.environ.update(SM_MODEL_DIR=job + "/model", SM_OUTPUT_DATA_DIR=job + "/output/data")
    started = time.time()
    code = train.run({fast!r} + ["--epochs", "1", "--optimizer", optimizer, "--lr", lr,
                                  "--checkpoint-dir", ""] + extra)
    with open(job + "/result.json", "w") as handle:
        json.dump({{"returncode": code, "started": started, "ended": time.time()}}, handle)
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> dict[str, Any]:
    """One final job (2 epochs, hook and profiler on) and the tuning trials, run as SageMaker runs them."""
    root = tmp_path_factory.mktemp("report-run")
    data = root / "data"
    for split, count in (("train", 8), ("valid", 3), ("test", 3)):
        for label, name in enumerate(CLASSES):
            folder = data / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                draw_shape(label, index + (0 if split == "train" else 100)).save(
                    folder / f"{name[4:]}_{index}.png"
                )
    final = root / "final"
    final.mkdir()
    final_command = [
        sys.executable,
        str(TRAINING_CODE / "train.py"),
        *FAST,
        "--epochs",
        "2",
        "--debug-hook",
        "on",
        "--profile",
        "on",
        "--checkpoint-dir",
        str(final / "ckpt"),
    ]
    trials_root = root / "trials"
    trials_command = [
        sys.executable,
        "-c",
        TRIAL_RUNNER.format(code=str(TRAINING_CODE), trials=TRIALS, root=str(trials_root), fast=FAST),
    ]
    started = time.time()
    # Both in parallel: the trials need no hook, so they finish while the final job still evaluates rules.
    final_process = subprocess.Popen(
        final_command,
        env=_container_env(final, data),
        cwd=final,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    trials_process = subprocess.run(
        trials_command,
        env=_container_env(trials_root, data, test=False),
        capture_output=True,
        text=True,
        timeout=240,
    )
    log, _ = final_process.communicate(timeout=240)
    assert final_process.returncode == 0, log.decode()[-3000:]
    assert trials_process.returncode == 0, trials_process.stderr[-3000:]
    return {
        "root": root,
        "data": data,
        "final": final,
        "final_log": log.decode(),
        "final_seconds": time.time() - started,
        "trials": trials_root,
    }


# ---------------------------------------------------------------------------------------- AWS shapes


def _definition() -> dict[str, Any]:
    text = (REPO_ROOT / "state_machine" / "pipeline.asl.json").read_text()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith("FunctionArn"):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stepsage-{name.removesuffix('FunctionArn')}"
        if name.endswith("TopicArn"):
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:stepsage-notices"
        return f"arn:aws:iam::{ACCOUNT}:role/stepsage-{name}"

    return json.loads(re.sub(r"\$\{(\w+)\}", substitute, text))


def _tarball(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def _trial_summaries(run: dict[str, Any]) -> list[dict[str, Any]]:
    summaries = []
    for index, (optimizer, lr, _extra) in enumerate(TRIALS):
        job = run["trials"] / f"trial-{index}"
        result = json.loads((job / "result.json").read_text())
        summary: dict[str, Any] = {
            "TrainingJobName": f"{TUNING_JOB}-{index + 1:03d}-abcdef{index}",
            "TrainingJobArn": f"{SAGEMAKER_ARN}:training-job/{TUNING_JOB}-{index + 1:03d}",
            "TuningJobName": TUNING_JOB,
            "CreationTime": T0 + datetime.timedelta(seconds=20 + index),
            "TrainingStartTime": datetime.datetime.fromtimestamp(result["started"], datetime.UTC),
            "TrainingEndTime": datetime.datetime.fromtimestamp(result["ended"], datetime.UTC),
            "TrainingJobStatus": "Completed" if result["returncode"] == 0 else "Failed",
            "TunedHyperParameters": {"optimizer": f'"{optimizer}"', "lr": lr},
        }
        if result["returncode"] == 0:
            history = json.loads((job / "output" / "data" / "metrics.json").read_text())
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": training_metrics.OBJECTIVE_METRIC,
                "Value": history["epochs"][-1]["valid_accuracy"],
            }
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["FailureReason"] = (job / "output" / "failure").read_text()
            summary["ObjectiveStatus"] = "Failed"
        summaries.append(summary)
    return summaries


def _tuning_description(trials: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [t for t in trials if "FinalHyperParameterTuningJobObjectiveMetric" in t]
    best = max(scored, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    failed = len(trials) - len(scored)
    return {
        "HyperParameterTuningJobName": TUNING_JOB,
        "HyperParameterTuningJobArn": f"{SAGEMAKER_ARN}:hyper-parameter-tuning-job/{TUNING_JOB}",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": training_metrics.OBJECTIVE_METRIC,
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": len(trials), "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
                ],
                "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adamw", "sgd"]}],
            },
            "TrainingJobEarlyStoppingType": "Off",
        },
        "HyperParameterTuningJobStatus": "Completed",
        "CreationTime": T0 + datetime.timedelta(seconds=10),
        "TrainingJobStatusCounters": {
            "Completed": len(scored),
            "NonRetryableError": failed,
            "InProgress": 0,
            "Stopped": 0,
        },
        "ObjectiveStatusCounters": {"Succeeded": len(scored), "Failed": failed, "Pending": 0},
        "BestTrainingJob": {k: v for k, v in best.items() if k != "FailureReason"},
    }


def _final_job_description(run: dict[str, Any], job_name: str, with_test: bool = True) -> dict[str, Any]:
    parsed = training_metrics.parse_metrics(run["final_log"])
    prefix = f"s3://{ARTIFACTS}/runs/{EXECUTION}"
    channels = ["train", "valid", *(["test"] if with_test else [])]
    return {
        "TrainingJobName": job_name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job_name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"{prefix}/final/{job_name}/output/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": {"epochs": "2", "optimizer": "adamw"},
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
            "TrainingInputMode": "File",
            "MetricDefinitions": training_metrics.METRIC_DEFINITIONS,
        },
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/stepsage-SageMakerRoleArn",
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{DATA}/staged/{EXECUTION}/{name}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for name in channels
        ],
        "OutputDataConfig": {"S3OutputPath": f"{prefix}/final/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": T0 + datetime.timedelta(seconds=120),
        "TrainingStartTime": T0 + datetime.timedelta(seconds=125),
        "TrainingEndTime": T0 + datetime.timedelta(seconds=125 + run["final_seconds"]),
        "TrainingTimeInSeconds": int(run["final_seconds"]),
        "BillableTimeInSeconds": int(run["final_seconds"]),
        "FinalMetricDataList": [
            {"MetricName": name, "Value": values[-1], "Timestamp": T0 + datetime.timedelta(seconds=150)}
            for name, values in parsed.items()
        ],
    }


class History:
    """AWS-shaped GetExecutionHistory events, written state by state along one path of the ASL."""

    def __init__(self, definition: dict[str, Any], document: dict[str, Any]) -> None:
        self.states = definition["States"]
        self.events: list[dict[str, Any]] = []
        self.clock = T0
        self.document = dict(document)
        self._add("ExecutionStarted", "executionStartedEventDetails", {"input": json.dumps(document)})

    def _add(self, kind: str, details_key: str | None = None, details: dict[str, Any] | None = None) -> None:
        event: dict[str, Any] = {"timestamp": self.clock, "type": kind, "id": len(self.events) + 1}
        if self.events:
            event["previousEventId"] = len(self.events)
        if details_key:
            event[details_key] = details or {}
        self.events.append(event)

    def state(
        self,
        name: str,
        seconds: float = 1.0,
        result: Any = None,
        *,
        job: dict | None = None,
        failures: tuple[tuple[str, str], ...] = (),
        caught: tuple[str, str] | None = None,
    ) -> None:
        state = self.states[name]
        kind = state["Type"]
        self._add(
            f"{kind}StateEntered",
            "stateEnteredEventDetails",
            {"name": name, "input": json.dumps(self.document)},
        )
        resource = state.get("Resource", "")
        attempts = [*failures, *([caught] if caught else [])]
        for attempt in range(len(attempts) + (0 if caught else 1)):
            failure = attempts[attempt] if attempt < len(attempts) else None
            if kind == "Task" and resource.startswith("arn:aws:lambda"):
                self._add(
                    "LambdaFunctionScheduled",
                    "lambdaFunctionScheduledEventDetails",
                    {"resource": resource, "input": "{}"},
                )
                self._add("LambdaFunctionStarted")
                self.clock += datetime.timedelta(seconds=seconds)
                if failure:
                    self._add(
                        "LambdaFunctionFailed",
                        "lambdaFunctionFailedEventDetails",
                        {"error": failure[0], "cause": failure[1]},
                    )
                else:
                    self._add(
                        "LambdaFunctionSucceeded",
                        "lambdaFunctionSucceededEventDetails",
                        {"output": json.dumps(result)},
                    )
            elif kind == "Task":
                resource_type, _, action = resource.split(":::", 1)[1].partition(":")
                common = {"resourceType": resource_type, "resource": action}
                self._add(
                    "TaskScheduled",
                    "taskScheduledEventDetails",
                    {**common, "region": REGION, "parameters": json.dumps(job["request"] if job else {})},
                )
                self._add("TaskStarted", "taskStartedEventDetails", common)
                if job:
                    self._add(
                        "TaskSubmitted",
                        "taskSubmittedEventDetails",
                        {**common, "output": json.dumps(job["submitted"])},
                    )
                self.clock += datetime.timedelta(seconds=seconds)
                if failure:
                    self._add(
                        "TaskFailed",
                        "taskFailedEventDetails",
                        {**common, "error": failure[0], "cause": failure[1]},
                    )
                else:
                    output = job["described"] if job else result
                    self._add(
                        "TaskSucceeded",
                        "taskSucceededEventDetails",
                        {**common, "output": json.dumps(output, default=str)},
                    )
            else:
                self.clock += datetime.timedelta(seconds=seconds)
        if caught:
            self.document["error"] = {"Error": caught[0], "Cause": caught[1]}
        elif state.get("ResultPath", "$.x") is not None and result is not None and "ResultPath" in state:
            self.document[state["ResultPath"].removeprefix("$.")] = result
        if kind != "Fail":  # AWS logs no exit for a Fail state
            self._add(
                f"{kind}StateExited",
                "stateExitedEventDetails",
                {"name": name, "output": json.dumps(self.document)},
            )

    def end(self, status: str) -> None:
        if status == "SUCCEEDED":
            self._add(
                "ExecutionSucceeded", "executionSucceededEventDetails", {"output": json.dumps(self.document)}
            )
        else:
            error = self.document["error"]
            self._add(
                "ExecutionFailed",
                "executionFailedEventDetails",
                {"error": error["Error"], "cause": error["Cause"]},
            )


def _job_events(request: dict[str, Any], arn_key: str, arn: str, described: dict[str, Any]) -> dict[str, Any]:
    return {"request": request, "submitted": {arn_key: arn}, "described": described}


def _succeeded_history(
    run: dict[str, Any], trials: list[dict[str, Any]], tuning: dict[str, Any], final: dict[str, Any]
) -> History:
    history = History(
        _definition(),
        {"bucket": DATA, "key": "datasets/shapes.zip", "version_id": "v1", "dataset_name": "shapes"},
    )
    channels = {name: f"s3://{DATA}/staged/{EXECUTION}/{name}/" for name in ("train", "valid", "test")}
    dataset = {"dataset_name": "shapes", "channels": channels, "classes": len(CLASSES)}
    history.state("StageData", 3.2, dataset)
    history.state("LaunchHPO", 1.1, {"request": {"HyperParameterTuningJobConfig": {}}})
    hpo_seconds = (trials[-1]["TrainingEndTime"] - trials[0]["TrainingStartTime"]).total_seconds()
    history.state(
        "RunHPO",
        hpo_seconds,
        {"name": TUNING_JOB, "status": "Completed"},
        job=_job_events(
            {"HyperParameterTuningJobName": TUNING_JOB},
            "HyperParameterTuningJobArn",
            tuning["HyperParameterTuningJobArn"],
            tuning,
        ),
    )
    history.state("SelectBest", 0.8, {"final": {"debugger_mode": "embedded", "request": {}}})
    history.state("FinalTrainingMode", 0.0)
    history.state(
        "TrainFinal",
        run["final_seconds"],
        {
            "name": FINAL_JOB,
            "status": "Completed",
            "model_artifacts": final["ModelArtifacts"]["S3ModelArtifacts"],
        },
        job=_job_events({"TrainingJobName": FINAL_JOB}, "TrainingJobArn", final["TrainingJobArn"], final),
    )
    verdicts = json.loads((run["final"] / "output" / "data" / "rules" / "verdicts.json").read_text())
    rules = {
        "verdict": "IssuesFound" if verdicts["issues_found"] else "NoIssuesFound",
        "mode": "embedded",
        "gate": "block",
        "proceed": True,
        "rules": [v["name"] for v in verdicts["rules"]],
    }
    # A first CheckRules attempt that its Retry waits out: the state must still count as succeeded.
    history.state("CheckRules", 2.0, rules, failures=(("RulesStillEvaluating", "rule jobs still running"),))
    history.state("RulesOk", 0.0)
    evaluation = json.loads((run["final"] / "model" / "evaluation.json").read_text())
    deployment = {
        "endpoint_name": ENDPOINT,
        "comparison": {
            "decision": "deploy",
            "reason": "no champion endpoint yet",
            "challenger_accuracy": evaluation["accuracy"],
            "champion_accuracy": None,
            "images": 0,
        },
        "expected_accuracy": evaluation["accuracy"],
        "previous_endpoint_config_name": None,
        "deployed": True,
        "created": True,
        "model_name": f"stepsage-{EXECUTION}",
        "endpoint_config_name": f"stepsage-{EXECUTION}",
        "endpoint_kind": "serverless",
    }
    history.state("Deploy", 4.0, deployment)
    history.state("Deployed", 0.0)
    history.state("StartEndpointWait", 0.0, {"polls": 0})
    for poll, status in enumerate(("Creating", "InService"), start=1):
        history.state("WaitForEndpoint", 30.0)
        history.state("DescribeEndpoint", 0.3, {"status": status, "config": f"stepsage-{EXECUTION}"})
        history.state("CountEndpointPoll", 0.0, {"polls": poll})
        history.state("EndpointReady", 0.0)
    smoke = {
        "endpoint_name": ENDPOINT,
        "accuracy": evaluation["accuracy"],
        "images": 9,
        "failed_calls": 0,
        "expected_accuracy": evaluation["accuracy"],
        "threshold": 0.0,
        "status": "passed",
        "pruned": [],
    }
    history.state("SmokeTest", 5.0, smoke)
    history.state("NotifySuccess", 0.2)
    history.state("Succeeded", 0.0)
    history.end("SUCCEEDED")
    return history


def _inference_runtime(model_dir: Path) -> tuple[Any, list[str]]:
    """A sagemaker-runtime client whose InvokeEndpoint is answered by the real inference.py."""
    code = model_dir / "code"
    sys.path.insert(0, str(code))
    try:
        spec = importlib.util.spec_from_file_location("report_test_inference", code / "inference.py")
        assert spec and spec.loader
        inference = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = inference  # its dataclasses look their module up
        spec.loader.exec_module(inference)
    finally:
        sys.path.remove(str(code))
    model = inference.model_fn(str(model_dir))
    calls: list[str] = []

    def serve(model: Any = None, params: dict[str, Any] | None = None, **_: Any) -> Any:
        assert params is not None
        calls.append(params["url_path"])
        request = inference.input_fn(params["body"], params["headers"]["Content-Type"])
        body = inference.output_fn(inference.predict_fn(request, loaded), "application/json").encode()
        parsed = {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), parsed

    loaded = model
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", serve)
    return client, calls


class Clients:
    """The report's ClientFactory: stubbed Step Functions and SageMaker, moto S3, served inference."""

    def __init__(self, runtime: Any = None) -> None:
        self.made = {
            "stepfunctions": boto3.client("stepfunctions", region_name=REGION),
            "sagemaker": boto3.client("sagemaker", region_name=REGION),
            "s3": boto3.client("s3", region_name=REGION),
            "logs": boto3.client("logs", region_name=REGION),
        }
        if runtime is not None:
            self.made["sagemaker-runtime"] = runtime
        self.sfn = Stubber(self.made["stepfunctions"])
        self.sagemaker = Stubber(self.made["sagemaker"])
        self.sfn.activate()
        self.sagemaker.activate()

    def __call__(self, service: str) -> Any:
        return self.made[service]

    def stub_execution(self, history: History, status: str, output: bool = True) -> None:
        described: dict[str, Any] = {
            "executionArn": EXECUTION_ARN,
            "stateMachineArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:stepsage-pipeline",
            "name": EXECUTION,
            "status": status,
            "startDate": T0,
            "stopDate": history.clock,
            "input": history.events[0]["executionStartedEventDetails"]["input"],
        }
        if status == "SUCCEEDED" and output:
            described["output"] = json.dumps(history.document)
        if status == "FAILED":
            described["error"] = history.document["error"]["Error"]
            described["cause"] = history.document["error"]["Cause"]
        arn = {"executionArn": EXECUTION_ARN}
        self.sfn.add_response("describe_execution", described, arn)
        self.sfn.add_response(
            "describe_state_machine_for_execution",
            {
                "stateMachineArn": described["stateMachineArn"],
                "name": "stepsage-pipeline",
                "definition": json.dumps(_definition()),
                "roleArn": f"arn:aws:iam::{ACCOUNT}:role/sfn",
                "updateDate": T0,
            },
            arn,
        )
        half = len(history.events) // 2  # two pages, as a long history comes
        self.sfn.add_response(
            "get_execution_history",
            {"events": history.events[:half], "nextToken": "page-2"},
            {**arn, "maxResults": 1000},
        )
        self.sfn.add_response(
            "get_execution_history",
            {"events": history.events[half:]},
            {**arn, "maxResults": 1000, "nextToken": "page-2"},
        )


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACTS)
        s3.create_bucket(Bucket=DATA)
        yield


def _upload_job(run_folder: Path, job_name: str) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    prefix = f"runs/{EXECUTION}/final/{job_name}/output"
    s3.put_object(Bucket=ARTIFACTS, Key=f"{prefix}/model.tar.gz", Body=_tarball(run_folder / "model"))
    s3.put_object(
        Bucket=ARTIFACTS, Key=f"{prefix}/output.tar.gz", Body=_tarball(run_folder / "output" / "data")
    )


def _upload_test_split(data: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for path in sorted((data / "test").rglob("*.png")):
        key = f"staged/{EXECUTION}/test/{path.relative_to(data / 'test').as_posix()}"
        s3.put_object(Bucket=DATA, Key=key, Body=path.read_bytes())


def _endpoint_description() -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
        "EndpointConfigName": f"stepsage-{EXECUTION}",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentWeight": 1.0, "CurrentInstanceCount": 1}
        ],
        "EndpointStatus": "InService",
        "CreationTime": T0 + datetime.timedelta(seconds=200),
        "LastModifiedTime": T0 + datetime.timedelta(seconds=260),
    }


# ------------------------------------------------------------------------------------------ checks


def _assert_labelled(name: str, figure: Any) -> None:
    """Every drawn axes has a title (its own or the figure's) and labelled axes; image tiles need only x."""
    has_suptitle = bool(figure.get_suptitle())
    drawn = [a for a in figure.axes if a.axison and a.get_label() != "<colorbar>"]
    assert drawn or name == "pipeline", name
    for axes in drawn:
        assert axes.get_title() or has_suptitle, f"{name}: an axes without a title"
        assert axes.get_xlabel(), f"{name}: x axis without a label"
        if axes.get_images() and not axes.get_yticks().size:
            continue  # a sample image tile: its x label names the true class
        assert axes.get_ylabel(), f"{name}: y axis without a label ({axes.get_title()})"
        assert axes.lines or axes.collections or axes.patches or axes.images, f"{name}: an empty plot"
    if name == "pipeline":
        assert figure.axes[0].get_title() and len(figure.axes[0].patches) >= len(_definition()["States"])


def test_complete_run_report_has_every_section_from_real_data(real_run, aws, tmp_path):
    _upload_job(real_run["final"], FINAL_JOB)
    _upload_test_split(real_run["data"])
    trials = _trial_summaries(real_run)
    tuning = _tuning_description(trials)
    final = _final_job_description(real_run, FINAL_JOB)
    history = _succeeded_history(real_run, trials, tuning, final)
    runtime, invocation_paths = _inference_runtime(real_run["final"] / "model")
    clients = Clients(runtime)
    clients.stub_execution(history, "SUCCEEDED")
    clients.sagemaker.add_response(
        "describe_hyper_parameter_tuning_job", tuning, {"HyperParameterTuningJobName": TUNING_JOB}
    )
    page_one = {"HyperParameterTuningJobName": TUNING_JOB, "MaxResults": 100}
    clients.sagemaker.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": trials[:2], "NextToken": "more"},
        page_one,
    )
    clients.sagemaker.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": trials[2:]},
        {**page_one, "NextToken": "more"},
    )
    clients.sagemaker.add_response("describe_training_job", final, {"TrainingJobName": FINAL_JOB})
    endpoint = _endpoint_description()
    clients.sagemaker.add_response("describe_endpoint", endpoint, {"EndpointName": ENDPOINT})
    tags = [{"Key": "stepsage:decision", "Value": "deploy"}, {"Key": "stepsage:stack", "Value": "stepsage"}]
    clients.sagemaker.add_response("list_tags", {"Tags": tags}, {"ResourceArn": endpoint["EndpointArn"]})

    run = Collector(clients, samples=6).collect(EXECUTION_ARN)
    result = builder.write_report(run, tmp_path / "report", keep_figures=True)
    clients.sfn.assert_no_pending_responses()
    clients.sagemaker.assert_no_pending_responses()

    html = result.html_path.read_text()
    for anchor, heading in builder.SECTIONS:
        assert f'<section id="{anchor}"><h2>{heading}</h2>' in html
    assert "not available" not in html, result.notes
    assert result.notes == {}
    expected = {
        "pipeline",
        "tuning-objective",
        "tuning-hyperparameters",
        "training-curves",
        "profiler-phases",
        "profiler-system",
        "per-class-accuracy",
        "confusion-matrix",
        "sample-predictions",
    }
    verdicts = json.loads((real_run["final"] / "output" / "data" / "rules" / "verdicts.json").read_text())
    expected |= {f"rule-{v['name']}" for v in verdicts["rules"]}
    assert set(result.pngs) == expected
    for name, path in result.pngs.items():
        assert path.exists() and path.read_bytes().startswith(b"\x89PNG"), name
        _assert_labelled(name, result.figures[name])
    # self-contained: every plot inline, nothing fetched from elsewhere
    assert html.count('src="data:image/png;base64,') == len(expected)
    assert not re.search(r'(src|href)="(https?:)?//', html)

    # The numbers on the page are the run's own.
    metrics_json = json.loads((real_run["final"] / "output" / "data" / "metrics.json").read_text())
    curves = result.figures["training-curves"].axes[0]
    assert np.asarray(curves.lines[0].get_ydata()).tolist() == pytest.approx(
        [e["train_loss"] for e in metrics_json["epochs"]]
    )
    evaluation = json.loads((real_run["final"] / "model" / "evaluation.json").read_text())
    assert f"Test accuracy <strong>{evaluation['accuracy']:.4f}</strong>" in html
    profile = json.loads((real_run["final"] / "output" / "data" / "profiler" / "profile.json").read_text())
    assert profile["bottleneck"]["summary"].split(":")[0] in html
    assert tuning["BestTrainingJob"]["TrainingJobName"] in html and "Failed" in html
    hyper_axes = {a.get_xlabel(): a for a in result.figures["tuning-hyperparameters"].axes if a.axison}
    assert hyper_axes["lr, logarithmic scale"].get_xscale() == "log"
    assert [t.get_text() for t in hyper_axes["optimizer"].get_xticklabels()] == ["adamw", "sgd"]

    # Pipeline: a retried CheckRules still succeeded, the endpoint poll loop ran twice.
    assert "<td>CheckRules</td><td>Task</td><td>succeeded</td>" in html
    assert '<td>WaitForEndpoint</td><td>Wait</td><td>succeeded</td><td class="num">2</td>' in html

    # Samples: the real model answered through InvokeEndpoint for images spread over every class.
    assert len(invocation_paths) == 6
    assert all(path == f"/endpoints/{ENDPOINT}/invocations" for path in invocation_paths)
    samples = run.samples
    assert isinstance(samples, list)
    assert {s.true_label for s in samples} == set(CLASSES)
    assert all(s.predicted in CLASSES and s.score is not None and 0 <= s.score <= 1 for s in samples)
    right = sum(s.predicted == s.true_label for s in samples)
    assert f"{right}/6 right" in result.figures["sample-predictions"].get_suptitle()


def test_run_failed_at_staging_reports_why_each_section_is_missing(aws, tmp_path):
    history = History(_definition(), {"bucket": DATA, "key": "datasets/bad.zip", "dataset_name": "bad"})
    history.state("StageData", 1.5, caught=("DatasetValidationError", "train/ has no class folders"))
    history.state("NotifyFailure", 0.2)
    history.state("PipelineFailed", 0.0)
    history.end("FAILED")
    clients = Clients()
    clients.stub_execution(history, "FAILED")

    run = Collector(clients).collect(EXECUTION_ARN)
    result = builder.write_report(run, tmp_path / "failed", keep_figures=True)
    clients.sfn.assert_no_pending_responses()
    clients.sagemaker.assert_no_pending_responses()  # nothing asked of SageMaker: no job was started

    html = result.html_path.read_text()
    assert set(result.pngs) == {"pipeline"}
    _assert_labelled("pipeline", result.figures["pipeline"])
    assert set(result.notes) == {"tuning", "training", "rules", "profiler", "test", "endpoint"}
    for section in result.notes.values():
        assert "never started" in section and "DatasetValidationError" in section
    assert html.count("not available:</strong>") >= 6
    assert "<td>StageData</td><td>Task</td><td>caught</td>" in html
    assert "<td>PipelineFailed</td><td>Fail</td><td>failed</td>" in html
    assert "train/ has no class folders" in html


def test_job_without_hook_or_profiler_and_no_deploy(real_run, aws, tmp_path):
    """A final job that ran without the hook and profiler (a trial's real output), and a kept champion."""
    trial_job = "trial-like-final"
    _upload_job(real_run["trials"] / "trial-0", trial_job)
    history = History(_definition(), {"bucket": DATA, "key": "datasets/shapes.zip", "dataset_name": "shapes"})
    history.state("StageData", 1.0, {"dataset_name": "shapes", "channels": {}})
    final = _final_job_description(real_run, trial_job, with_test=False)
    history.state(
        "TrainFinal",
        10.0,
        {"name": trial_job},
        job=_job_events({"TrainingJobName": trial_job}, "TrainingJobArn", final["TrainingJobArn"], final),
    )
    kept = {
        "endpoint_name": ENDPOINT,
        "deployed": False,
        "comparison": {"decision": "keep", "reason": "champion 0.95 beats challenger 0.33"},
    }
    history.state("Deploy", 2.0, kept)
    history.state("Deployed", 0.0)
    history.state("NotifySuccess", 0.1)
    history.state("Succeeded", 0.0)
    history.end("SUCCEEDED")
    clients = Clients()
    clients.stub_execution(history, "SUCCEEDED")
    clients.sagemaker.add_response("describe_training_job", final, {"TrainingJobName": trial_job})
    endpoint = _endpoint_description()
    clients.sagemaker.add_response("describe_endpoint", endpoint, {"EndpointName": ENDPOINT})
    clients.sagemaker.add_response("list_tags", {"Tags": []}, {"ResourceArn": endpoint["EndpointArn"]})

    run = Collector(clients, samples=4).collect(EXECUTION_ARN)
    result = builder.write_report(run, tmp_path / "partial", keep_figures=True)
    clients.sagemaker.assert_no_pending_responses()

    assert {"pipeline", "training-curves", "per-class-accuracy", "confusion-matrix"} <= set(result.pngs)
    assert "without the debugging hook" in result.notes["rules"]
    assert "without --profile on" in result.notes["profiler"]
    assert "no test channel" in result.notes["test"]
    assert "champion was kept" in result.notes["endpoint"]
    assert "never started a tuning job" in result.notes["tuning"]
    for name, figure in result.figures.items():
        _assert_labelled(name, figure)


def test_epoch_lines_from_the_training_log_match_metrics_json(real_run):
    """The CloudWatch Logs path: the job's own metric regexes over its real log."""
    epochs = epochs_from_log(real_run["final_log"].splitlines(), training_metrics.METRIC_DEFINITIONS)
    recorded = json.loads((real_run["final"] / "output" / "data" / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for parsed, saved in zip(epochs, recorded, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy", "train_accuracy"):
            assert parsed[key] == pytest.approx(saved[key], rel=1e-4)
