"""SelectBest's one job: read the tuning job's winner and prepare the final training job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from final_training import best_summary, final_training_request

from stepsage_lambda.sagemaker_api import SageMakerApi
from stepsage_lambda.settings import TrainingSettings


def select_best(
    *,
    tuning_job_name: str,
    execution_name: str,
    dataset: Mapping[str, Any],
    env: Mapping[str, str],
    sagemaker: SageMakerApi,
) -> dict[str, Any]:
    settings = TrainingSettings.from_env(env)
    best = sagemaker.best_training_job(tuning_job_name)
    described = sagemaker.describe_training_job(best["TrainingJobName"])
    request = final_training_request(
        execution_name=execution_name,
        dataset=dataset,
        trial_hyperparameters=described["HyperParameters"],
        # The trial's own definitions are the bundled metrics.py's, so the final job reads the same lines.
        metric_definitions=described["AlgorithmSpecification"].get("MetricDefinitions", []),
        settings=settings,
        rule_image=env.get("RULE_EVALUATOR_IMAGE_URI"),
    )
    return {
        "best": best_summary(best, described),
        "final": {"debugger_mode": settings.debugger_mode, "request": request},
    }
