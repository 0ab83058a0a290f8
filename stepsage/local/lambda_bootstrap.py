"""A warm Lambda worker: imports one handler in an isolated interpreter and serves invocations over pipes."""

# This file runs under `python -I -S`: no site-packages, only the stdlib and the paths the parent passes,
# so a function can import exactly what its own build and layers contain, as on AWS.
import importlib
import json
import os
import sys
import time
import traceback


class LambdaContext:
    """The attributes of AWS's context object that handlers and Powertools read."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["_STEPSAGE_FUNCTION_ARN"]
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(error_type: str, message: str, tb=None) -> dict:
    return {
        "errorType": error_type,
        "errorMessage": message,
        "stackTrace": traceback.format_tb(tb) if tb else [],
    }


def _load_handler():
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        return None, _error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}")
    except Exception as error:  # an exception during init is reported on every invocation, as Lambda does
        return None, _error(type(error).__name__, str(error), error.__traceback__)
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, _error(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return handler, None


def main() -> None:
    sys.path[:0] = json.loads(os.environ.pop("_STEPSAGE_SYS_PATH"))
    requests = os.fdopen(int(os.environ.pop("_STEPSAGE_REQUEST_FD")), "r", encoding="utf-8")
    responses = os.fdopen(int(os.environ.pop("_STEPSAGE_RESPONSE_FD")), "w", encoding="utf-8")
    handler, init_error = _load_handler()
    responses.write(json.dumps({"ready": init_error is None}) + "\n")
    responses.flush()
    for line in requests:
        message = json.loads(line)
        if init_error is not None:
            reply = {"error": init_error}
        else:
            context = LambdaContext(message["request_id"], message["deadline"])
            try:
                result = handler(message["event"], context)
            except Exception as error:
                reply = {"error": _error(type(error).__name__, str(error), error.__traceback__)}
            else:
                try:
                    reply = {"result": json.loads(json.dumps(result))}
                except (TypeError, ValueError) as error:
                    reply = {"error": _error("Runtime.MarshalError", f"Unable to marshal response: {error}")}
        if "error" in reply:
            # The Python runtime logs an unhandled error to the function's log stream, as here.
            failure = reply["error"]
            print(f"[ERROR] {failure['errorType']}: {failure['errorMessage']}", file=sys.stderr)
            print("".join(failure["stackTrace"]), file=sys.stderr, end="")
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps(reply) + "\n")
        responses.flush()


if __name__ == "__main__":
    main()
