"""SelectBest's one job: read the tuning job's winner and prepare the final training job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from final_training import best_summary, final_training_request

from stepsage_lambda.payloads import FinalTraining, SelectBestInput, Selection
from stepsage_lambda.sagemaker_api import SageMakerApi
from stepsage_lambda.settings import TrainingSettings, declared


@dataclass(frozen=True)
class SelectionSettings:
    """SelectBestFunction's environment, read once per cold start by its handler."""

    training: TrainingSettings
    # The region's Debugger rule image; needed only when DEBUGGER_MODE is managed.
    rule_image: str | None

    ENV_VARS: ClassVar[tuple[str, ...]] = (*TrainingSettings.ENV_VARS, "RULE_EVALUATOR_IMAGE_URI")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SelectionSettings:
        env = declared(env, cls)
        return cls(TrainingSettings.from_env(env), env.get("RULE_EVALUATOR_IMAGE_URI") or None)


def select_best(event: SelectBestInput, *, settings: SelectionSettings, sagemaker: SageMakerApi) -> Selection:
    training = settings.training
    best = sagemaker.best_training_job(event.tuning_job_name)
    described = sagemaker.describe_training_job(best["TrainingJobName"])
    request = final_training_request(
        execution_name=event.execution_name,
        dataset=event.dataset,
        trial_hyperparameters=described["HyperParameters"],
        # The trial's own definitions are the bundled metrics.py's, so the final job reads the same lines.
        metric_definitions=described["AlgorithmSpecification"].get("MetricDefinitions", []),
        settings=training,
        rule_image=settings.rule_image,
    )
    return Selection(
        best=best_summary(best, described),
        final=FinalTraining(debugger_mode=training.debugger_mode, request=request),  # type: ignore[arg-type]
    )
