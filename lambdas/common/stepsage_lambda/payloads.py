"""The typed payloads the pipeline's steps pass each other through the state machine, named as in the ASL."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Unknown fields, per model:
# - Our own payloads (what a Lambda returns and another reads, or what the ASL's Parameters build) forbid
#   them: a field one side adds and the other does not know is drift between two units, and it fails here
#   instead of being dropped on the way.
# - Shapes that come from an AWS service (the ResultSelector picks of SageMaker's job descriptions) ignore
#   them: AWS adds response fields over time, and only the ones named here are used.
OURS = ConfigDict(frozen=True, extra="forbid")
FROM_AWS = ConfigDict(frozen=True, extra="ignore")

DebuggerMode = Literal["embedded", "managed", "off"]
RuleStatus = Literal["NoIssuesFound", "IssuesFound", "Error"]
Verdict = Literal["NoIssuesFound", "IssuesFound", "Error", "Skipped"]
S3Prefix = Field(pattern=r"^s3://[^/]+/.*/$")


class Channels(BaseModel):
    """The staged splits, each an S3 prefix holding `<label>/<image>` (SM_CHANNEL_TRAIN/VALID/TEST)."""

    model_config = OURS

    train: str = S3Prefix
    valid: str = S3Prefix
    test: str = S3Prefix


class SplitCounts(BaseModel):
    model_config = OURS

    train: int = Field(ge=0)
    valid: int = Field(ge=0)
    test: int = Field(ge=0)


class StagedDataset(BaseModel):
    """StageData's result, `$.dataset`: what LaunchHpo, SelectBest, Deploy and SmokeTest read."""

    model_config = OURS

    dataset_name: str = Field(min_length=1)
    dataset_hash: str = Field(min_length=1)
    labels: list[str]
    num_classes: int = Field(ge=1)
    counts: SplitCounts
    channels: Channels
    # Users read the manifest (dataset_hash, files[] with path, channel and sha256) at this URI.
    manifest: str = Field(pattern=r"^s3://[^/]+/.+/manifest\.json$")
    split_created: bool


class LaunchHpoInput(BaseModel):
    model_config = OURS

    execution_name: str
    role_arn: str
    dataset: StagedDataset


class TuningJobRequest(BaseModel):
    """CreateHyperParameterTuningJob less its name; RunHPO passes each field by path.

    The three bodies stay botocore's own shapes: tests validate them against the service model, so a
    second typed copy here would be a second owner of AWS's schema.
    """

    model_config = OURS

    HyperParameterTuningJobConfig: dict[str, Any]
    TrainingJobDefinition: dict[str, Any]
    Tags: list[dict[str, str]]


class TuningPlan(BaseModel):
    """LaunchHpo's result, `$.tuning`."""

    model_config = OURS

    request: TuningJobRequest
    code_uri: str = Field(pattern=r"^s3://")
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"]


class TuningJobResult(BaseModel):
    """RunHPO's ResultSelector pick of DescribeHyperParameterTuningJob, `$.hpo`."""

    model_config = FROM_AWS

    name: str
    status: str


class SelectBestInput(BaseModel):
    model_config = OURS

    tuning_job_name: str
    execution_name: str
    dataset: StagedDataset


class Objective(BaseModel):
    model_config = OURS

    name: str | None
    value: float | None


class BestJob(BaseModel):
    """The winning trial, as SelectBest reports it."""

    model_config = OURS

    training_job_name: str
    tuned_hyperparameters: dict[str, str]
    objective: Objective
    model_artifacts: str | None


class FinalTraining(BaseModel):
    """The final job: FinalTrainingMode chooses on `debugger_mode`; TrainFinal passes `request`'s fields.

    `request` is CreateTrainingJob less TrainingJobName and RoleArn, botocore's shape (see TuningJobRequest).
    """

    model_config = OURS

    debugger_mode: DebuggerMode
    request: dict[str, Any]


class Selection(BaseModel):
    """SelectBest's result, `$.selection`."""

    model_config = OURS

    best: BestJob
    final: FinalTraining


class TrainingJobResult(BaseModel):
    """TrainFinal's ResultSelector pick of DescribeTrainingJob, `$.final_job`."""

    model_config = FROM_AWS

    name: str
    status: str
    model_artifacts: str


class CheckRulesInput(BaseModel):
    model_config = OURS

    training_job_name: str
    debugger_mode: DebuggerMode


class RuleOutcome(BaseModel):
    model_config = OURS

    name: str
    status: RuleStatus
    message: str = ""


class RulesVerdict(BaseModel):
    """CheckRules' result, `$.rules`: RulesOk reads `proceed`; RulesBlocked fails the run with `blocked_by`
    as the error and the whole verdict, `reason` included, as the cause."""

    model_config = OURS

    verdict: Verdict
    rules: list[RuleOutcome]
    mode: DebuggerMode
    gate: Literal["rules", "strict", "always"]
    advisories: list[str]
    proceed: bool
    blocked_by: Literal["RuleIssuesFound", "RuleErrors", "RulesDidNotRun"] | None
    reason: str


class DeployInput(BaseModel):
    model_config = OURS

    execution_name: str
    role_arn: str
    model_artifacts: str = Field(pattern=r"^s3://")
    dataset: StagedDataset


class Comparison(BaseModel):
    """Champion/challenger on the same held-out split; `champion_accuracy` is None when there is none."""

    model_config = OURS

    decision: Literal["deploy", "keep-champion"]
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    images: int

    def as_tags(self) -> dict[str, str]:
        champion = "none" if self.champion_accuracy is None else f"{self.champion_accuracy:.4f}"
        return {
            "stepsage:decision": self.decision,
            "stepsage:reason": self.reason,
            "stepsage:challenger-accuracy": f"{self.challenger_accuracy:.4f}",
            "stepsage:champion-accuracy": champion,
            "stepsage:compared-images": str(self.images),
        }


class ChampionKept(BaseModel):
    """Deploy's result, `$.deployment`, when the serving model stays (Deployed goes to NotifySuccess)."""

    model_config = OURS

    endpoint_name: str
    deployed: Literal[False] = False
    comparison: Comparison
    expected_accuracy: float
    previous_endpoint_config_name: str | None


class Deployment(BaseModel):
    """Deploy's result, `$.deployment`, when the new model goes out (endpoint wait and SmokeTest use it)."""

    model_config = OURS

    endpoint_name: str
    deployed: Literal[True] = True
    created: bool
    model_name: str
    endpoint_config_name: str
    endpoint_kind: Literal["serverless", "realtime"]
    expected_accuracy: float
    previous_endpoint_config_name: str | None
    comparison: Comparison


class SmokeTestInput(BaseModel):
    model_config = OURS

    deployment: Deployment
    dataset: StagedDataset


class SmokeTestSuperseded(BaseModel):
    """SmokeTest's result, `$.smoke_test`, when a later run has taken the endpoint over."""

    model_config = OURS

    status: Literal["superseded"] = "superseded"
    endpoint_name: str


class SmokeTestPassed(BaseModel):
    """SmokeTest's result, `$.smoke_test`, when the endpoint agrees with evaluation.json."""

    model_config = OURS

    endpoint_name: str
    accuracy: float
    images: int
    failed_calls: int
    expected_accuracy: float
    threshold: float
    status: Literal["passed"] = "passed"
    pruned: list[str]
