"""The AWS wrappers that Deploy and SmokeTest both work an endpoint with."""

from __future__ import annotations

from dataclasses import dataclass

from stepsage_lambda.runtime_api import RuntimeApi
from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import SageMakerApi


@dataclass(frozen=True)
class EndpointServices:
    sagemaker: SageMakerApi
    s3: S3Api
    runtime: RuntimeApi

    @classmethod
    def default(cls) -> EndpointServices:
        return cls(SageMakerApi(), S3Api(), RuntimeApi())
