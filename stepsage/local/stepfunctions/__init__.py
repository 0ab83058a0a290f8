"""The local Step Functions service: moto's ASL interpreter behind AWS's API, with stepsage's integrations."""

from stepsage.local.stepfunctions.service import StepFunctionsService

__all__ = ["StepFunctionsService"]
