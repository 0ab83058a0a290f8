"""SageMaker Runtime in the pipeline's own verbs: score one image on an endpoint."""

from __future__ import annotations

import json
from typing import Any

from contracts import images
from stepsage_lambda.clients import client as default_client


def content_type_for(key: str) -> str:
    """What InvokeEndpoint gets for a staged image, by its name (contracts.images)."""
    return images.endpoint_media_type(images.format_for_filename(key))


class RuntimeApi:
    def __init__(self, runtime_client: Any | None = None) -> None:
        self._runtime = runtime_client or default_client("sagemaker-runtime")

    def top_label(self, endpoint_name: str, image: bytes, content_type: str) -> str:
        """The endpoint's top-1 label for one image (the inference API's `predictions[0].label`)."""
        response = self._runtime.invoke_endpoint(
            EndpointName=endpoint_name, Body=image, ContentType=content_type, Accept="application/json"
        )
        answer: dict[str, Any] = json.loads(response["Body"].read())
        return str(answer["predictions"][0]["label"])
