"""Errors that local services raise in AWS's own terms."""

from __future__ import annotations


class ServiceError(Exception):
    """An AWS-style API error: `code` is what AWS puts in the error's Code, `status_code` its HTTP status."""

    def __init__(self, code: str, message: str, status_code: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status_code = status_code


class SageMakerError(ServiceError):
    """ValidationException, ResourceNotFound, ResourceInUse, ResourceLimitExceeded ..."""


class StepFunctionsError(ServiceError):
    """StateMachineDoesNotExist, ExecutionAlreadyExists, InvalidDefinition ..."""


class LambdaFunctionError(Exception):
    """A Lambda function raised: the same fields Lambda returns (errorType, errorMessage, stackTrace)."""

    def __init__(self, error_type: str, error_message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace or []
