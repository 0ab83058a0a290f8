"""Training jobs: the SageMaker container contract, run as a local subprocess with logs and metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepsage.local.sagemaker.context import EmulatorContext, now
from stepsage.local.sagemaker.processes import describe_exit, thread_environment, thread_share
from stepsage.local.sagemaker.storage import S3TransferError, directory_has_files

EPOCH_PATTERN = re.compile(r"\bepoch[=:\s]+(\d+)", re.IGNORECASE)
_ERROR_LINE = re.compile(r"(Error|Exception|Traceback|error:)")
FAILURE_REASON_LIMIT = 1024

_STATUS_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped: MaxRuntimeInSeconds exceeded",
}

MetricObserver = Callable[["TrainingJob", str, float, int], None]
FinishObserver = Callable[["TrainingJob"], None]
LogObserver = Callable[["TrainingJob", str], None]
LOG_NAME = "train.log"
# What a job writes into its folder; a rerun in the same folder removes these and nothing else.
_JOB_FILES = ("sourcedir.tar.gz", "model.tar.gz", "output.tar.gz", LOG_NAME)


class MetricParser:
    """Reads metric values out of log lines with MetricDefinitions (the first group is the value)."""

    def __init__(self, definitions: list[dict[str, str]]) -> None:
        self._definitions = [(d["Name"], re.compile(d["Regex"])) for d in definitions]

    def parse(self, line: str) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, pattern in self._definitions:
            match = pattern.search(line)
            if match is None:
                continue
            text = match.group(1) if match.groups() else match.group(0)
            try:
                values[name] = float(text)
            except (TypeError, ValueError):
                continue
        return values


def cli_value(value: str) -> str:
    """SageMaker SDKs JSON-encode hyperparameter values; the container decodes strings before passing them."""
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return value
    return decoded if isinstance(decoded, str) else value


def script_arguments(hyperparameters: dict[str, str]) -> list[str]:
    """`--key value` pairs in request order, without the platform's own `sagemaker_*` keys."""
    arguments: list[str] = []
    for key, value in hyperparameters.items():
        if key.startswith("sagemaker_"):
            continue
        arguments += [f"--{key}", cli_value(value)]
    return arguments


def failure_reason(returncode: int, log_lines: list[str], failure_file_text: str | None) -> str:
    """AWS's `AlgorithmError: <message>, exit code: N`, from the failure file or the last error line."""
    exit_text = describe_exit(returncode)
    if failure_file_text and failure_file_text.strip():
        message = failure_file_text.strip()
    else:
        candidates = [line for line in log_lines if line.strip()]
        errors = [line for line in candidates if _ERROR_LINE.search(line)]
        message = (errors or candidates or [""])[-1].strip()
    reason = f"AlgorithmError: {message}, {exit_text}" if message else f"AlgorithmError: {exit_text}"
    return reason[:FAILURE_REASON_LIMIT]


def _safe_extract(archive: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")


def _make_tarball(source: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)


class TrainingJob:
    """One training job: its AWS-shaped state, and the thread that runs it."""

    def __init__(
        self,
        context: EmulatorContext,
        request: dict[str, Any],
        *,
        tuning_job_arn: str | None = None,
        parallel_jobs: int = 1,
        on_metric: MetricObserver | None = None,
        on_finish: FinishObserver | None = None,
        on_log: LogObserver | None = None,
        job_dir: Path | None = None,
    ) -> None:
        self.context = context
        self.request = request
        self.name: str = request["TrainingJobName"]
        self.arn = context.arn("training-job", self.name)
        self.tuning_job_arn = tuning_job_arn
        self.threads = thread_share(context.cores, parallel_jobs)
        self.on_metric = on_metric
        self.on_finish = on_finish
        self.on_log = on_log
        self.job_dir = job_dir or context.work_dir / "training-jobs" / self.name
        self.log_path = self.job_dir / LOG_NAME
        self.exit_code: int | None = None  # the training script's, once it ran
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._stop_secondary = "Stopped"
        self._done = threading.Event()
        self._log: list[str] = []
        self._checkpoint_uploads: dict[str, float] = {}
        self.metric_history: dict[str, list[float]] = {}
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.start_time: Any = None
        self.end_time: Any = None
        self.status = "InProgress"
        self.secondary_status = "Starting"
        self.transitions: list[dict[str, Any]] = [
            {
                "Status": "Starting",
                "StartTime": self.creation_time,
                "StatusMessage": _STATUS_MESSAGES["Starting"],
            }
        ]
        self.failure_reason: str | None = None
        self.model_artifacts: str | None = None
        self.final_metrics: list[dict[str, Any]] = []
        self.rule_statuses: list[dict[str, Any]] = [
            {
                "RuleConfigurationName": rule["RuleConfigurationName"],
                "RuleEvaluationStatus": "InProgress",
                "LastModifiedTime": self.creation_time,
            }
            for rule in request.get("DebugRuleConfigurations") or []
        ]
        self._parser = MetricParser(request["AlgorithmSpecification"].get("MetricDefinitions") or [])
        self._thread = threading.Thread(target=self._run, name=f"training-{self.name}", daemon=True)

    # ---- public surface -------------------------------------------------------------------------

    def start(self) -> None:
        self.context.emit(
            "TrainingJobStatus",
            job=self.name,
            status=self.status,
            secondary_status="Starting",
            tuning_job_arn=self.tuning_job_arn,
        )
        self._thread.start()

    def stop(self, secondary_status: str = "Stopped") -> bool:
        """Ask the job to stop; False if it had already finished."""
        with self._lock:
            if self.status != "InProgress":
                return False
            self._stop_secondary = secondary_status
            self._set_status("Stopping", "Stopping")
            self._stop_requested.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Stopped")

    def logs(self) -> list[str]:
        with self._lock:
            return list(self._log)

    def objective_history(self, metric_name: str) -> list[float]:
        with self._lock:
            return list(self.metric_history.get(metric_name, []))

    def final_metric(self, metric_name: str) -> float | None:
        history = self.objective_history(metric_name)
        return history[-1] if history else None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            request = self.request
            out: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
                "HyperParameters": dict(request.get("HyperParameters") or {}),
                "AlgorithmSpecification": request["AlgorithmSpecification"],
                "RoleArn": request["RoleArn"],
                "InputDataConfig": request.get("InputDataConfig") or [],
                "OutputDataConfig": request["OutputDataConfig"],
                "ResourceConfig": request["ResourceConfig"],
                "StoppingCondition": request.get("StoppingCondition") or {"MaxRuntimeInSeconds": 86400},
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
                "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
                "EnableInterContainerTrafficEncryption": request.get(
                    "EnableInterContainerTrafficEncryption", False
                ),
                "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
            }
            if self.tuning_job_arn:
                out["TuningJobArn"] = self.tuning_job_arn
            if self.model_artifacts:
                out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            if self.failure_reason:
                out["FailureReason"] = self.failure_reason
            if self.start_time:
                out["TrainingStartTime"] = self.start_time
            if self.end_time:
                out["TrainingEndTime"] = self.end_time
                seconds = max(
                    1, int((self.end_time - (self.start_time or self.creation_time)).total_seconds())
                )
                out["TrainingTimeInSeconds"] = seconds
                out["BillableTimeInSeconds"] = seconds
            if self.final_metrics:
                out["FinalMetricDataList"] = [dict(m) for m in self.final_metrics]
            for key in (
                "CheckpointConfig",
                "DebugHookConfig",
                "DebugRuleConfigurations",
                "Environment",
                "ProfilerConfig",
                "TensorBoardOutputConfig",
                "ExperimentConfig",
                "RetryStrategy",
                "VpcConfig",
            ):
                if key in request:
                    out[key] = request[key]
            if self.rule_statuses:
                out["DebugRuleEvaluationStatuses"] = [dict(s) for s in self.rule_statuses]
            return out

    def summary(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
            }
            if self.end_time:
                out["TrainingEndTime"] = self.end_time
            return out

    # ---- state changes --------------------------------------------------------------------------

    def _set_status(self, status: str | None, secondary: str, message: str | None = None) -> None:
        with self._lock:
            stamp = now()
            if self.transitions and self.transitions[-1]["Status"] == secondary:
                return
            if self.transitions:
                self.transitions[-1]["EndTime"] = stamp
            self.transitions.append(
                {
                    "Status": secondary,
                    "StartTime": stamp,
                    "StatusMessage": message or _STATUS_MESSAGES.get(secondary, secondary),
                }
            )
            if status is not None:
                self.status = status
            self.secondary_status = secondary
            self.last_modified_time = stamp
            if status in ("Completed", "Failed", "Stopped"):
                self.transitions[-1]["EndTime"] = stamp
        self.context.emit(
            "TrainingJobStatus",
            job=self.name,
            status=self.status,
            secondary_status=secondary,
            tuning_job_arn=self.tuning_job_arn,
            failure_reason=self.failure_reason,
        )

    def _finish(self, status: str, secondary: str, reason: str | None = None) -> None:
        with self._lock:
            self.end_time = now()
            self.failure_reason = reason
            self.final_metrics = [
                {"MetricName": name, "Value": values[-1], "Timestamp": self.end_time}
                for name, values in self.metric_history.items()
                if values
            ]
        self._set_status(status, secondary)

    def _append_log(self, line: str) -> None:
        values = self._parser.parse(line)
        with self._lock:
            self._log.append(line)
            for name, value in values.items():
                self.metric_history.setdefault(name, []).append(value)
            steps = {name: len(self.metric_history[name]) for name in values}
        epoch_match = EPOCH_PATTERN.search(line)
        if values and epoch_match:
            self.context.emit(
                "Epoch",
                job=self.name,
                epoch=int(epoch_match.group(1)),
                metrics=values,
                tuning_job_arn=self.tuning_job_arn,
            )
        if self.on_log is not None:
            self.on_log(self, line)
        if self.on_metric is not None:
            for name, value in values.items():
                self.on_metric(self, name, value, steps[name])

    # ---- the run --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._run_stages()
        except Exception as e:  # an emulator bug must still end the job, never leave it InProgress
            self._finish("Failed", "Failed", f"InternalServerError: {e}")
        finally:
            self._done.set()
            if self.on_finish is not None:
                self.on_finish(self)

    def _paths(self) -> dict[str, Path]:
        root = self.job_dir
        return {
            "input": root / "input",
            "data": root / "input" / "data",
            "config": root / "input" / "config",
            "model": root / "model",
            "output": root / "output",
            "output_data": root / "output" / "data",
            "checkpoints": root / "checkpoints",
            "code": root / "code",
            "rules": root / "rules",
        }

    def _run_stages(self) -> None:
        paths = self._paths()
        # A rerun in the same folder starts clean (stale checkpoints would resume the previous job); the
        # folder may be a user's (train-local's --out), so only what a job writes there goes.
        for name, path in paths.items():
            if name != "input":
                shutil.rmtree(path, ignore_errors=True)
        for name in _JOB_FILES:
            (self.job_dir / name).unlink(missing_ok=True)
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        self._set_status(None, "Downloading")
        try:
            program = self._prepare_inputs(paths)
        except (S3TransferError, tarfile.TarError, OSError) as e:
            if self._stop_requested.is_set():  # the stop aborted the download
                self._finish("Stopped", self._stop_secondary)
            else:
                self._finish("Failed", "Failed", f"ClientError: {e}"[:FAILURE_REASON_LIMIT])
            return
        if self._stop_requested.is_set():
            self._finish("Stopped", self._stop_secondary)
            return
        with self._lock:
            self.start_time = now()
        self._set_status(None, "Training")
        returncode, stopped_by = self._train(program, paths)
        self.exit_code = returncode
        self._sync_checkpoints(paths, final=True)
        if stopped_by is not None:
            try:
                self._upload_outputs(paths, required=False)
            except S3TransferError as e:
                self._append_log(f"[emulator] output upload of the stopped job failed: {e}")
            self._finish("Stopped", stopped_by)
            return
        if returncode != 0:
            failure_file = paths["output"] / "failure"
            text = failure_file.read_text(errors="replace") if failure_file.is_file() else None
            self._finish("Failed", "Failed", failure_reason(returncode, self.logs(), text))
            return
        self._set_status(None, "Uploading")
        try:
            self._upload_outputs(paths, required=True)
        except S3TransferError as e:
            self._finish("Failed", "Failed", f"ClientError: {e}"[:FAILURE_REASON_LIMIT])
            return
        self._finish("Completed", "Completed")
        if self.rule_statuses:
            self._run_rules(paths)

    def _prepare_inputs(self, paths: dict[str, Path]) -> Path:
        storage = self.context.storage
        request = self.request
        hyperparameters = request.get("HyperParameters") or {}
        channels = request.get("InputDataConfig") or []
        for channel in channels:
            source = channel["DataSource"].get("S3DataSource")
            if source is None:
                raise S3TransferError(
                    f"Channel {channel['ChannelName']}: only S3DataSource is supported locally"
                )
            count = storage.download_prefix(source["S3Uri"], paths["data"] / channel["ChannelName"])
            if count == 0:
                raise S3TransferError(
                    f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input data source.'
                )
        submit = hyperparameters.get("sagemaker_submit_directory")
        if submit:
            submit = cli_value(submit)
            archive = self.job_dir / "sourcedir.tar.gz"
            if submit.startswith("file://"):
                shutil.copyfile(submit[len("file://") :], archive)
            else:
                storage.download_file(submit, archive)
            _safe_extract(archive, paths["code"])
        checkpoint = request.get("CheckpointConfig")
        if checkpoint:
            storage.download_prefix(checkpoint["S3Uri"], paths["checkpoints"])
        program_name = cli_value(hyperparameters.get("sagemaker_program", ""))
        if not program_name:
            raise S3TransferError("The hyperparameter sagemaker_program (the entry point script) is required")
        program = (paths["code"] / program_name).resolve()
        if not program.is_file() or not program.is_relative_to(paths["code"].resolve()):
            raise S3TransferError(f"Entry point {program_name} not found in the submitted source directory")
        self._write_config(paths, channels)
        return program

    def _write_config(self, paths: dict[str, Path], channels: list[dict[str, Any]]) -> None:
        config = paths["config"]
        request = self.request
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters") or {}))
        resources = request["ResourceConfig"]
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": "algo-1",
                    "hosts": ["algo-1"],
                    "current_instance_type": resources.get("InstanceType", "local"),
                    "network_interface_name": "lo",
                }
            )
        )
        (config / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    c["ChannelName"]: {
                        "TrainingInputMode": c.get(
                            "InputMode", request["AlgorithmSpecification"].get("TrainingInputMode", "File")
                        ),
                        "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                            "S3DataDistributionType", "FullyReplicated"
                        ),
                        "RecordWrapperType": c.get("RecordWrapperType", "None"),
                    }
                    for c in channels
                }
            )
        )
        hook = request.get("DebugHookConfig")
        if hook is not None or request.get("DebugRuleConfigurations"):
            hook = dict(hook or {})
            # The container's /opt/ml/output/tensors lives under the job dir here; the trial sits in the
            # output data so that it ships in output.tar.gz (docs/contracts.md).
            hook["LocalPath"] = str(paths["output_data"] / "tensors")
            hook.setdefault(
                "S3OutputPath",
                f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/debug-output",
            )
            (config / "debughookconfig.json").write_text(json.dumps(hook))

    def environment(self) -> dict[str, str]:
        """The environment the training script runs in: SM_* pointing into the job folder, thread caps."""
        return self._environment(self._paths())

    def _environment(self, paths: dict[str, Path]) -> dict[str, str]:
        request = self.request
        hyperparameters = request.get("HyperParameters") or {}
        user_hps = {k: cli_value(v) for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        channel_names = [c["ChannelName"] for c in request.get("InputDataConfig") or []]
        env = dict(os.environ)
        env.update(thread_environment(self.threads))
        env.update(
            {
                "TRAINING_JOB_NAME": self.name,
                "TRAINING_JOB_ARN": self.arn,
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_NUM_CPUS": str(self.threads),
                "SM_NUM_GPUS": "0",
                "SM_MODEL_DIR": str(paths["model"]),
                "SM_OUTPUT_DATA_DIR": str(paths["output_data"]),
                "SM_OUTPUT_DIR": str(paths["output"]),
                "SM_INPUT_DIR": str(paths["input"]),
                "SM_INPUT_CONFIG_DIR": str(paths["config"]),
                "SM_CHECKPOINT_DIR": str(paths["checkpoints"]),
                "SM_CHANNELS": json.dumps(channel_names),
                "SM_HPS": json.dumps(user_hps),
                "SM_USER_ARGS": json.dumps(script_arguments(hyperparameters)),
                "SM_USER_ENTRY_POINT": cli_value(hyperparameters.get("sagemaker_program", "")),
                "SM_MODULE_DIR": cli_value(hyperparameters.get("sagemaker_submit_directory", "")),
                "SM_LOG_LEVEL": "20",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(paths["code"]), os.environ.get("PYTHONPATH", "")) if p
                ),
            }
        )
        for name in channel_names:
            env[f"SM_CHANNEL_{name.upper()}"] = str(paths["data"] / name)
        if (paths["config"] / "debughookconfig.json").exists():
            env["SMDEBUG_CONFIG_FILE_PATH"] = str(paths["config"] / "debughookconfig.json")
        env.update(request.get("Environment") or {})
        return env

    def _train(self, program: Path, paths: dict[str, Path]) -> tuple[int, str | None]:
        """Run the script; returns its exit code and, when the job was stopped, the secondary status."""
        arguments = script_arguments(self.request.get("HyperParameters") or {})
        if not any(a in ("--checkpoint-dir", "--checkpoint_dir") for a in arguments):
            # The container's fixed /opt/ml/checkpoints would be shared by concurrent local jobs, which would
            # then resume each other's checkpoints; each job gets its own (the contract's --checkpoint-dir).
            arguments += ["--checkpoint-dir", str(paths["checkpoints"])]
        command = [self.context.python, str(program), *arguments]
        process = self.context.processes.spawn(command, cwd=paths["code"], env=self._environment(paths))
        reader = threading.Thread(target=self._read_output, args=(process,), daemon=True)
        reader.start()
        stopping = self.request.get("StoppingCondition") or {}
        max_runtime = stopping.get("MaxRuntimeInSeconds", 86400)
        started = time.monotonic()
        last_sync = started
        stopped_by: str | None = None
        while process.poll() is None:
            if self._stop_requested.wait(0.1):
                stopped_by = self._stop_secondary
                self.context.processes.terminate(process, self.context.stop_grace_seconds)
                break
            if time.monotonic() - started > max_runtime:
                stopped_by = "MaxRuntimeExceeded"
                self._set_status("Stopping", "Stopping")
                self.context.processes.terminate(process, self.context.stop_grace_seconds)
                break
            if time.monotonic() - last_sync > self.context.checkpoint_sync_seconds:
                self._sync_checkpoints(paths)
                last_sync = time.monotonic()
        returncode = process.wait()
        self.context.processes.terminate(process, 0)  # reaps any grandchildren left in its group
        reader.join(timeout=5)
        return returncode, stopped_by

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log_file:
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                log_file.write(line + "\n")
                log_file.flush()
                self._append_log(line)

    def _sync_checkpoints(self, paths: dict[str, Path], final: bool = False) -> None:
        checkpoint = self.request.get("CheckpointConfig")
        if not checkpoint:
            return
        try:
            self.context.storage.sync_up(paths["checkpoints"], checkpoint["S3Uri"], self._checkpoint_uploads)
        except S3TransferError as e:
            self._append_log(f"[emulator] checkpoint sync failed{' at the end' if final else ''}: {e}")

    def _upload_outputs(self, paths: dict[str, Path], required: bool) -> None:
        prefix = f"{self.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/output"
        if required or directory_has_files(paths["model"]):
            archive = self.job_dir / "model.tar.gz"
            _make_tarball(paths["model"], archive)
            self.context.storage.upload_file(archive, f"{prefix}/model.tar.gz")
            with self._lock:
                self.model_artifacts = f"{prefix}/model.tar.gz"
        if required or directory_has_files(paths["output_data"]):
            archive = self.job_dir / "output.tar.gz"
            _make_tarball(paths["output_data"], archive)
            self.context.storage.upload_file(archive, f"{prefix}/output.tar.gz")

    # ---- rule jobs ------------------------------------------------------------------------------

    def _run_rules(self, paths: dict[str, Path]) -> None:
        """The rule jobs: one `python -m rules` run over the trial evaluates every configured rule at once
        (each rule reads the same tensors), then each configuration gets its own status."""
        trial = paths["output_data"] / "tensors"
        if not trial.exists():
            trial = paths["output"] / "tensors"
        configurations = self.request.get("DebugRuleConfigurations") or []
        params: dict[str, dict[str, Any]] = {}
        for index, rule in enumerate(configurations):
            name = rule["RuleConfigurationName"]
            rule_arn = self.context.arn("processing-job", f"{self.name[:26]}-{name[:26]}-{index:02d}")
            self._set_rule_status(index, "InProgress", rule_arn=rule_arn)
            parameters = dict(rule.get("RuleParameters") or {})
            params[parameters.pop("rule_to_invoke", name)] = parameters
        out_path = paths["rules"] / "verdicts.json"
        command = [
            self.context.python,
            "-m",
            "rules",
            str(trial),
            str(out_path),
            "--params",
            json.dumps(params),
        ]
        process = self.context.processes.spawn(command, cwd=paths["code"], env=self._environment(paths))
        assert process.stdout is not None
        output = process.stdout.read().decode("utf-8", errors="replace").splitlines()
        returncode = process.wait()
        self.context.processes.forget(process)
        with self._lock:
            self._log.extend(f"[rules] {line}" for line in output)
        verdict: dict[str, Any] | None = None
        problem: str | None = None
        if returncode != 0 or not out_path.exists():
            problem = failure_reason(returncode or 1, output, None).replace("AlgorithmError", "RuleError")
        else:
            try:
                verdict = json.loads(out_path.read_text())
            except ValueError as e:
                problem = f"RuleError: unreadable verdicts: {e}"
        for index, (rule_name, rule) in enumerate(zip(params, configurations, strict=True)):
            if verdict is None:
                self._set_rule_status(index, "Error", details=problem)
                continue
            status, details = rule_status(verdict, rule_name)
            self._set_rule_status(index, status, details=details)
            destination = rule.get("S3OutputPath") or (
                f"{self.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/rule-output"
            )
            try:
                self.context.storage.upload_file(
                    out_path, f"{destination.rstrip('/')}/{rule_name}/verdicts.json"
                )
            except S3TransferError as e:
                self._append_log(f"[emulator] rule output upload failed: {e}")

    def _set_rule_status(
        self, index: int, status: str, *, rule_arn: str | None = None, details: str | None = None
    ) -> None:
        with self._lock:
            entry = self.rule_statuses[index]
            entry["RuleEvaluationStatus"] = status
            entry["LastModifiedTime"] = now()
            if rule_arn:
                entry["RuleEvaluationJobArn"] = rule_arn
            if details:
                entry["StatusDetails"] = details[:FAILURE_REASON_LIMIT]
            self.last_modified_time = entry["LastModifiedTime"]
        self.context.emit(
            "RuleEvaluationStatus", job=self.name, rule=entry["RuleConfigurationName"], status=status
        )


def rule_status(verdict: dict[str, Any], rule_name: str | None = None) -> tuple[str, str | None]:
    """Managed-rule status from verdicts (docs/contracts.md): the entry named `rule_name`, else all."""
    rules = verdict.get("rules")
    entries: list[dict[str, Any]] = rules if isinstance(rules, list) else [verdict]
    if rule_name is not None and isinstance(rules, list):
        entries = [entry for entry in entries if entry.get("name") == rule_name]
        if not entries:
            return "Error", f"RuleError: no verdict for rule {rule_name}"
    statuses = [entry.get("status") for entry in entries]
    messages = [entry.get("message") for entry in entries if entry.get("message")]
    details = "; ".join(str(m) for m in messages) or None
    if not statuses or any(s not in ("NoIssuesFound", "IssuesFound") for s in statuses):
        return "Error", details or "RuleError: verdict without a valid status"
    if "IssuesFound" in statuses:
        return "IssuesFound", details
    return "NoIssuesFound", details
