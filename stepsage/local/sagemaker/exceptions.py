"""The SageMaker and SageMaker Runtime errors the emulator raises, with AWS's codes and HTTP statuses."""

from __future__ import annotations

from stepsage.local.errors import SageMakerError


class ValidationError(SageMakerError):
    """A request that breaks the service model or a documented rule; also SageMaker's "Could not find ..."."""

    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message, 400)


class ResourceNotFound(SageMakerError):
    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFound", message, 400)


class ResourceInUse(SageMakerError):
    def __init__(self, message: str) -> None:
        super().__init__("ResourceInUse", message, 400)


class ResourceLimitExceeded(SageMakerError):
    def __init__(self, message: str) -> None:
        super().__init__("ResourceLimitExceeded", message, 400)


class RuntimeValidationError(SageMakerError):
    """SageMaker Runtime's own validation error (its code is `ValidationError`, not `ValidationException`)."""

    def __init__(self, message: str) -> None:
        super().__init__("ValidationError", message, 400)


class ModelError(SageMakerError):
    """The model container answered 4xx/5xx; SageMaker Runtime reports it as 424 with the original status."""

    def __init__(
        self, message: str, original_status_code: int, original_message: str, log_stream_arn: str
    ) -> None:
        super().__init__("ModelError", message, 424)
        self.original_status_code = original_status_code
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn


class ServiceUnavailable(SageMakerError):
    def __init__(self, message: str) -> None:
        super().__init__("ServiceUnavailable", message, 503)
