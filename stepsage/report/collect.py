"""Everything a run report shows, read through the AWS APIs (Step Functions, SageMaker, S3, Logs)."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts import artifact as artifact_layout
from contracts import images
from stepsage.report.clients import ClientFactory
from stepsage.report.history import (
    TRAINING_RESOURCE,
    TUNING_RESOURCE,
    JobReference,
    execution_end,
    sagemaker_jobs,
    state_document,
)
from stepsage.transfers import CountingReader, TransferProgress

OUTPUT_MEMBERS = (
    "metrics.json",
    artifact_layout.EVALUATION,
    artifact_layout.RUN_INFO,
    "rules/verdicts.json",
    "profiler/profile.json",
)
# What the report may also read from model.tar.gz when output.tar.gz lacks it (both carry these).
MODEL_MEMBERS = (artifact_layout.EVALUATION, artifact_layout.RUN_INFO)
# Keys read from a test prefix when picking samples: enough to cover 133 classes several times over.
MAX_LISTED_KEYS = 20000
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_EPOCH = re.compile(r"\bepoch=(\d+)\b")


@dataclass
class Unavailable:
    """A section's data could not be had; `reason` says why, for the reader."""

    reason: str


@dataclass
class Tuning:
    description: dict[str, Any]
    trials: list[dict[str, Any]]

    @property
    def objective(self) -> dict[str, Any]:
        config = self.description.get("HyperParameterTuningJobConfig", {})
        return dict(config.get("HyperParameterTuningJobObjective") or {})

    @property
    def ranges(self) -> dict[str, dict[str, Any]]:
        """Tuned name -> {"kind": continuous|integer|categorical, "scaling", "values"/"min"/"max"}."""
        config = self.description.get("HyperParameterTuningJobConfig", {}).get("ParameterRanges") or {}
        found: dict[str, dict[str, Any]] = {}
        for kind, key in (("continuous", "ContinuousParameterRanges"), ("integer", "IntegerParameterRanges")):
            for entry in config.get(key, []):
                found[entry["Name"]] = {
                    "kind": kind,
                    "scaling": entry.get("ScalingType", "Auto"),
                    "min": float(entry["MinValue"]),
                    "max": float(entry["MaxValue"]),
                }
        for entry in config.get("CategoricalParameterRanges", []):
            found[entry["Name"]] = {"kind": "categorical", "values": [unquote(v) for v in entry["Values"]]}
        return found

    @property
    def best_name(self) -> str | None:
        return (self.description.get("BestTrainingJob") or {}).get("TrainingJobName")


@dataclass
class Sample:
    key: str
    image: bytes
    true_label: str
    predicted: str | None = None
    score: float | None = None
    error: str | None = None


@dataclass
class Endpoint:
    name: str
    description: dict[str, Any] | None
    tags: dict[str, str]
    deployment: dict[str, Any]
    smoke_test: dict[str, Any] | None
    problem: str | None = None


@dataclass
class RunData:
    execution_arn: str
    execution: dict[str, Any]
    definition: dict[str, Any]
    events: list[dict[str, Any]]
    document: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, JobReference] = field(default_factory=dict)
    tuning: Tuning | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    final_job: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    metrics: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    verdicts: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    profile: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    evaluation: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    run_info: dict[str, Any] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    samples: list[Sample] | Unavailable = field(default_factory=lambda: Unavailable("not read"))
    endpoint: Endpoint | Unavailable = field(default_factory=lambda: Unavailable("not read"))


def unquote(value: Any) -> str:
    """Tuned values as people write them: SageMaker may JSON-quote categorical values ('"adamw"')."""
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _problem(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


LARGE_DOWNLOAD_BYTES = 20 * 1024 * 1024


def read_tar_members(s3: Any, uri: str, members: Iterable[str]) -> dict[str, bytes]:
    """The named files of a .tar.gz on S3, streamed (no seeking), stopping once all are found."""
    wanted = set(members)
    bucket, key = split_s3_uri(uri)
    response = s3.get_object(Bucket=bucket, Key=key)
    body: Any = response["Body"]
    size = int(response.get("ContentLength") or 0)
    if size > LARGE_DOWNLOAD_BYTES:  # a hooked job's tensors can make this hundreds of MB
        body = CountingReader(body, TransferProgress(f"reading {key.rsplit('/', 1)[-1]}", size))
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for entry in archive:
            name = entry.name.removeprefix("./")
            if name in wanted and entry.isfile():
                handle = archive.extractfile(entry)
                if handle is not None:
                    found[name] = handle.read()
                if len(found) == len(wanted):
                    break
    return found


def output_tarball_uri(described_job: dict[str, Any]) -> str:
    """Where SageMaker puts SM_OUTPUT_DATA_DIR: <S3OutputPath>/<job>/output/output.tar.gz."""
    base = described_job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{base}/{described_job['TrainingJobName']}/output/output.tar.gz"


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = sfn.get_execution_history(
            executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


def _trials(sagemaker: Any, tuning_job_name: str) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job_name,
            MaxResults=100,
            **({"NextToken": token} if token else {}),
        )
        trials.extend(page["TrainingJobSummaries"])
        token = page.get("NextToken")
        if not token:
            return sorted(trials, key=lambda t: (str(t.get("CreationTime", "")), t["TrainingJobName"]))


def epochs_from_log(lines: Iterable[str], metric_definitions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Per-epoch records from the training log's metric lines, read with the job's own MetricDefinitions."""
    patterns = [(d["Name"].replace(":", "_"), re.compile(d["Regex"])) for d in metric_definitions]
    epochs: dict[int, dict[str, Any]] = {}
    for line in lines:
        match = _EPOCH.search(line)
        if not match:
            continue
        record = epochs.setdefault(int(match.group(1)), {"epoch": int(match.group(1))})
        for name, pattern in patterns:
            found = pattern.search(line)
            if found:
                record[name] = float(found.group(1))
    return [epochs[e] for e in sorted(epochs)]


def read_execution(sfn: Any, execution_arn: str) -> RunData:
    """The execution, its definition and history, and what the history names: the jobs it started, its
    state document and how it ended. Read from the execution itself, never guessed from timestamps."""
    execution = sfn.describe_execution(executionArn=execution_arn)
    definition = json.loads(
        sfn.describe_state_machine_for_execution(executionArn=execution_arn)["definition"]
    )
    events = _history(sfn, execution_arn)
    run = RunData(execution_arn=execution_arn, execution=execution, definition=definition, events=events)
    run.document = state_document(events, execution.get("output"))
    run.end = execution_end(events)
    run.jobs = sagemaker_jobs(events, definition)
    return run


class Collector:
    """Reads one execution's report data; each part fails alone, into an Unavailable with the reason."""

    def __init__(self, clients: ClientFactory, samples: int = 16) -> None:
        self.clients = clients
        self.sample_count = samples

    def collect(self, execution_arn: str) -> RunData:
        run = read_execution(self.clients("stepfunctions"), execution_arn)
        run.tuning = self._tuning(run)
        run.final_job = self._final_job(run)
        self._artifacts(run)
        run.endpoint = self._endpoint(run)
        run.samples = self._samples(run)
        return run

    def _stopped_before(self, run: RunData, what: str) -> Unavailable:
        status = run.execution.get("status", "UNKNOWN")
        error = f" ({run.end['error']})" if run.end.get("error") else ""
        return Unavailable(f"the execution ({status}{error}) never started {what}")

    def _tuning(self, run: RunData) -> Tuning | Unavailable:
        reference = run.jobs.get(TUNING_RESOURCE)
        if reference is None:
            return self._stopped_before(run, "a tuning job")
        sagemaker = self.clients("sagemaker")
        try:
            description = sagemaker.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=reference.name
            )
            return Tuning(description, _trials(sagemaker, reference.name))
        except (ClientError, BotoCoreError) as e:
            return Unavailable(f"tuning job {reference.name}: {_problem(e)}")

    def _final_job(self, run: RunData) -> dict[str, Any] | Unavailable:
        reference = run.jobs.get(TRAINING_RESOURCE)
        if reference is None:
            return self._stopped_before(run, "the final training job")
        try:
            return dict(self.clients("sagemaker").describe_training_job(TrainingJobName=reference.name))
        except (ClientError, BotoCoreError) as e:
            return Unavailable(f"training job {reference.name}: {_problem(e)}")

    def _artifacts(self, run: RunData) -> None:
        job = run.final_job
        if isinstance(job, Unavailable):
            run.metrics = run.verdicts = run.profile = run.evaluation = run.run_info = job
            return
        name, status = job["TrainingJobName"], job.get("TrainingJobStatus")
        uri = output_tarball_uri(job)
        try:
            files = read_tar_members(self.clients("s3"), uri, OUTPUT_MEMBERS)
            missing_why = f"not in {uri}"
        except (ClientError, BotoCoreError, tarfile.TarError, ValueError) as e:
            files, missing_why = {}, f"{uri}: {_problem(e)} (job {name} is {status})"

        def load(member: str) -> dict[str, Any] | Unavailable:
            if member not in files:
                return Unavailable(f"{member} {missing_why}")
            try:
                return dict(json.loads(files[member]))
            except ValueError as e:
                return Unavailable(f"{member} in {uri} is not JSON: {e}")

        run.metrics = load("metrics.json")
        if isinstance(run.metrics, Unavailable):
            run.metrics = self._metrics_from_logs(job, run.metrics)
        run.verdicts = load("rules/verdicts.json")
        if isinstance(run.verdicts, Unavailable) and not job.get("DebugRuleEvaluationStatuses"):
            run.verdicts = Unavailable(f"{run.verdicts.reason}: the job ran without the debugging hook")
        run.profile = load("profiler/profile.json")
        if isinstance(run.profile, Unavailable):
            run.profile = Unavailable(f"{run.profile.reason}: the job ran without --profile on")
        loaded = {member: load(member) for member in MODEL_MEMBERS}
        artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        missing = [member for member, value in loaded.items() if isinstance(value, Unavailable)]
        if missing and artifact:
            # The model artifact carries evaluation.json and run.json too (contracts.artifact).
            try:
                model_files = read_tar_members(self.clients("s3"), artifact, missing)
                for member in missing:
                    if member in model_files:
                        loaded[member] = dict(json.loads(model_files[member]))
            except (ClientError, BotoCoreError, tarfile.TarError, ValueError) as e:
                for member in missing:
                    reason = loaded[member].reason  # type: ignore[union-attr]
                    loaded[member] = Unavailable(f"{reason}; {artifact}: {_problem(e)}")
        run.evaluation = loaded[artifact_layout.EVALUATION]
        run.run_info = loaded[artifact_layout.RUN_INFO]

    def _metrics_from_logs(self, job: dict[str, Any], missing: Unavailable) -> dict[str, Any] | Unavailable:
        """DescribeTrainingJob keeps only final metrics; on AWS the per-epoch lines are in CloudWatch Logs."""
        definitions = (job.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        if not definitions:
            return missing
        try:
            logs = self.clients("logs")
            lines: list[str] = []
            for page in logs.get_paginator("filter_log_events").paginate(
                logGroupName=TRAINING_LOG_GROUP,
                logStreamNamePrefix=f"{job['TrainingJobName']}/",
                filterPattern='"epoch="',
            ):
                lines.extend(event.get("message", "") for event in page.get("events", []))
        except (ClientError, BotoCoreError) as e:
            return Unavailable(f"{missing.reason}; CloudWatch Logs: {_problem(e)}")
        epochs = epochs_from_log(lines, definitions)
        if not epochs:
            return Unavailable(f"{missing.reason}; no epoch lines in CloudWatch Logs {TRAINING_LOG_GROUP}")
        return {"epochs": epochs, "source": f"CloudWatch Logs {TRAINING_LOG_GROUP}"}

    def _endpoint(self, run: RunData) -> Endpoint | Unavailable:
        deployment = run.document.get("deployment")
        if not isinstance(deployment, dict) or not deployment.get("endpoint_name"):
            return self._stopped_before(run, "Deploy")
        name = str(deployment["endpoint_name"])
        smoke = run.document.get("smoke_test") if isinstance(run.document.get("smoke_test"), dict) else None
        endpoint = Endpoint(name, None, {}, deployment, smoke)
        sagemaker = self.clients("sagemaker")
        try:
            endpoint.description = dict(sagemaker.describe_endpoint(EndpointName=name))
            tags = sagemaker.list_tags(ResourceArn=endpoint.description["EndpointArn"]).get("Tags", [])
            endpoint.tags = {t["Key"]: t["Value"] for t in tags}
        except (ClientError, BotoCoreError) as e:
            endpoint.problem = _problem(e)
        return endpoint

    def _samples(self, run: RunData) -> list[Sample] | Unavailable:
        if self.sample_count <= 0:
            return Unavailable("sample predictions were not asked for (--samples 0)")
        endpoint, job = run.endpoint, run.final_job
        if isinstance(endpoint, Unavailable):
            return endpoint
        if endpoint.description is None or endpoint.description.get("EndpointStatus") != "InService":
            state = endpoint.problem or (endpoint.description or {}).get("EndpointStatus")
            return Unavailable(f"endpoint {endpoint.name} is not in service ({state})")
        if isinstance(job, Unavailable):
            return job
        channels = {c["ChannelName"]: c for c in job.get("InputDataConfig", [])}
        if "test" not in channels:
            return Unavailable(f"training job {job['TrainingJobName']} had no test channel")
        prefix = channels["test"]["DataSource"]["S3DataSource"]["S3Uri"]
        s3, runtime = self.clients("s3"), self.clients("sagemaker-runtime")
        try:
            bucket, key_prefix, relative = _list_images(s3, prefix)
        except (ClientError, BotoCoreError, ValueError) as e:
            return Unavailable(f"test images at {prefix}: {_problem(e)}")
        chosen = pick_samples(relative, self.sample_count)
        if not chosen:
            return Unavailable(f"no test images (class/file) under {prefix}")
        samples = []
        for relative_key, label in chosen:
            key = key_prefix + relative_key
            try:
                image = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except (ClientError, BotoCoreError) as e:
                return Unavailable(f"s3://{bucket}/{key}: {_problem(e)}")
            sample = Sample(key=key, image=image, true_label=label)
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint.name,
                    ContentType=images.endpoint_media_type(images.format_for_filename(key)),
                    Accept="application/json",
                    Body=image,
                )
                top = json.loads(response["Body"].read())["predictions"][0]
                sample.predicted, sample.score = str(top["label"]), float(top["score"])
            except (ClientError, BotoCoreError, ValueError, KeyError, IndexError) as e:
                sample.error = _problem(e)
            samples.append(sample)
        return samples


def _list_images(s3: Any, prefix_uri: str) -> tuple[str, str, list[str]]:
    """(bucket, prefix, image keys relative to the prefix) for an ImageFolder root on S3."""
    bucket, prefix = split_s3_uri(prefix_uri.rstrip("/") + "/")
    relative: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if images.has_image_extension(item["Key"]):
                relative.append(item["Key"][len(prefix) :])
        if len(relative) >= MAX_LISTED_KEYS:
            break
    return bucket, prefix, relative


def pick_samples(relative_keys: list[str], count: int) -> list[tuple[str, str]]:
    """(key, class) pairs spread over the classes (`class/file` keys): one per class in turn, and classes
    evenly spaced when there are more classes than samples."""
    by_class: dict[str, list[str]] = {}
    for key in sorted(relative_keys):
        parts = key.split("/")
        if len(parts) >= 2 and parts[0]:
            by_class.setdefault(parts[0], []).append(key)
    classes = sorted(by_class)
    if not classes or count <= 0:
        return []
    if len(classes) > count:
        step = len(classes) / count
        classes = [classes[int(i * step)] for i in range(count)]
    chosen: list[tuple[str, str]] = []
    round_index = 0
    while len(chosen) < count and any(round_index < len(by_class[c]) for c in classes):
        for label in classes:
            if round_index < len(by_class[label]) and len(chosen) < count:
                chosen.append((by_class[label][round_index], label))
        round_index += 1
    return chosen
