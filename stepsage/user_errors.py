"""The command line's one error boundary: which exceptions are a user's mistake, and the line that says so."""

from __future__ import annotations

import argparse
import errno
import re
import sys
from typing import Any, NoReturn

EXIT_USER_ERROR = 2
EXIT_BUG = 1
LOCAL_CLOUD_HINT = (
    "to use the local cloud run `stepsage local up` and set AWS_ENDPOINT_URL=http://127.0.0.1:4566 "
    "(any credentials work locally)"
)
# AWS error codes that mean the request named something wrong or the caller may not make it.
USER_ERROR_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidArn",
        "InvalidName",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "ExecutionDoesNotExist",
        "StateMachineDoesNotExist",
        "NoSuchBucket",
        "NoSuchKey",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


class UserError(Exception):
    """A mistake in what the user asked for; the CLI prints its message as one line and exits 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse's own exit status 2 for a bad command line, but one line naming the command, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(text: Any) -> str:
    """Any message as a single line: newlines and runs of spaces collapse to one space."""
    return re.sub(r"\s+", " ", str(text)).strip()


def _boto_message(error: BaseException) -> str | None:
    """The line for a botocore error a user can fix, or None when it is not one."""
    try:
        from botocore import exceptions as boto
    except ModuleNotFoundError:  # pragma: no cover - boto3 is a dependency of every install
        return None
    if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError):
        return f"no AWS credentials found; {LOCAL_CLOUD_HINT}"
    if isinstance(error, boto.ProfileNotFound):
        return f"{error}; pass an existing --profile or unset AWS_PROFILE"
    if isinstance(error, boto.NoRegionError):
        return "no AWS region configured; pass --region or set AWS_DEFAULT_REGION"
    if isinstance(error, boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ProxyConnectionError):
        endpoint = getattr(error, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return f"cannot reach {endpoint}: is it running? {LOCAL_CLOUD_HINT}"
    if isinstance(error, boto.ParamValidationError):
        return f"AWS would refuse the request: {error}"
    if isinstance(error, boto.InvalidEndpointConfigurationError | boto.InvalidRegionError):
        return f"{error}; check --region, AWS_REGION and AWS_ENDPOINT_URL"
    if isinstance(error, boto.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        # A 4xx answer is the request's fault (a wrong name, no access); a 5xx or a throttle is not theirs.
        if code in USER_ERROR_CODES or (400 <= status < 500 and "Throttl" not in code):
            operation = getattr(error, "operation_name", "the request")
            return f"AWS refused {operation}: {code}: {details.get('Message', '')}".rstrip(": ")
    return None


def user_message(error: BaseException) -> str | None:
    """One line for an error that is the user's to fix; None means a bug in stepsage."""
    if isinstance(error, UserError):
        return one_line(error)
    from contracts import datasets
    from stepsage.local.template import ParameterError

    if isinstance(error, ParameterError | datasets.InvalidDatasetName):
        return one_line(error)
    boto_message = _boto_message(error)
    if boto_message is not None:
        return one_line(boto_message)
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return "the port is already in use (is another `stepsage local up` running?); pass another --port"
    if isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        # Errors on the paths a user passed; strerror and filename, without errno's bracketed number.
        name = f": {error.filename}" if error.filename else ""
        return one_line(f"{error.strerror or error}{name}")
    return None


def report(command: str, error: BaseException, debug: bool) -> int:
    """Print the error's one line (and with --debug its traceback) and return the exit status."""
    message = user_message(error)
    if debug:
        import traceback

        traceback.print_exception(error)
    if message is not None:
        print(f"{command}: {message}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    detail = one_line(f"{type(error).__name__}: {error}")
    hint = "" if debug else "; run with --debug for the traceback"
    print(f"{command}: internal error, a bug in stepsage ({detail}){hint}", file=sys.stderr, flush=True)
    return EXIT_BUG
