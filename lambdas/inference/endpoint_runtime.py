"""The inference Lambda's one wrapper over SageMaker Runtime: classify an image on a named endpoint."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Tracer
from botocore.exceptions import BotoCoreError, ClientError
from image_request import EndpointFailed, EndpointNotFound, EndpointUnavailable, endpoint_error

from stepsage_lambda.clients import client as aws_client

tracer = Tracer()

# Error codes that mean "try again shortly" rather than "this request is wrong".
_TRANSIENT_CODES = ("ThrottlingException", "InternalFailure", "InternalDependencyException")
# The function may invoke only endpoints tagged with its own stack (template.yaml), so SageMaker answers
# AccessDenied for another stack's endpoint and, where it checks tags first, for one that does not exist.
# SageMaker Runtime models no type for it, so the code is what there is.
_NOT_OURS_CODES = ("AccessDeniedException", "AccessDenied")


class EndpointRuntime:
    def __init__(self, endpoint_name: str, runtime_client: Any | None = None) -> None:
        self.endpoint_name = endpoint_name
        self._client = runtime_client or aws_client("sagemaker-runtime")

    @tracer.capture_method(capture_response=False)
    def classify(self, body: bytes, content_type: str) -> dict[str, Any]:
        """InvokeEndpoint -> the endpoint's JSON answer; failures become typed RequestRejected errors."""
        errors = self._client.exceptions
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
            )
            document = json.loads(response["Body"].read())
        except errors.ModelError as e:
            raise endpoint_error(
                e.response.get("OriginalStatusCode"), e.response.get("OriginalMessage")
            ) from e
        except (errors.ModelNotReadyException, errors.ServiceUnavailable) as e:
            raise EndpointUnavailable(f"endpoint {self.endpoint_name} is not ready; retry shortly") from e
        except errors.ValidationError as e:
            # Our own request is checked before the call, so this is an endpoint that does not exist or is
            # not in service; SageMaker Runtime gives both the one error type.
            raise EndpointNotFound(
                f"endpoint {self.endpoint_name} is not serving: it does not exist or is not in service yet "
                f"(a dataset's endpoint appears after its first successful run). SageMaker: {_message(e)}"
            ) from e
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in _NOT_OURS_CODES:
                raise EndpointNotFound(
                    f"endpoint {self.endpoint_name} is not serving for this stack: it does not exist yet or "
                    "belongs to another stack"
                ) from e
            if code in _TRANSIENT_CODES:
                raise EndpointUnavailable(f"endpoint {self.endpoint_name} is busy; retry shortly") from e
            raise EndpointFailed(f"endpoint {self.endpoint_name} failed: {_message(e)}") from e
        except BotoCoreError as e:  # timeouts and connection errors
            raise EndpointFailed(f"endpoint {self.endpoint_name} did not answer: {e}", status_code=504) from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EndpointFailed(f"endpoint {self.endpoint_name} answered with invalid JSON") from e
        return document


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message") or error)
