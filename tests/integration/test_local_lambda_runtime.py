"""Local Lambda workers: isolated imports, own environments, warm reuse and Lambda-shaped errors."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import pytest

from stepsage.local.errors import LambdaFunctionError
from stepsage.local.lambda_runtime import LambdaBuilder, LambdaRuntime
from stepsage.local.template import resolve_stack

pytestmark = pytest.mark.integration

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
    Metadata:
      BuildMethod: makefile
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Layers: [!Ref SharedLayer]
      Environment:
        Variables:
          GREETING: !Ref Greeting
          DATA_DIR: /opt/data
          PEER: !GetAtt OtherFunction.Arn
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: other/
      Handler: app.handler
      Timeout: 1
      Environment:
        Variables:
          GREETING: other
"""

ECHO = """
import os, sys, time
import shared_lib

class DatasetValidationError(Exception):
    pass

STARTED = time.time()

def handler(event, context):
    action = event.get("action")
    if action == "fail":
        raise DatasetValidationError("class 003.Cat is empty")
    if action == "import":
        __import__(event["module"])
        return {"imported": event["module"]}
    if action == "exit":
        os._exit(3)
    if action == "unserializable":
        return {"value": object()}
    return {
        "greeting": os.environ["GREETING"],
        "peer": os.environ["PEER"],
        "data": open(os.path.join(os.environ["DATA_DIR"], "x.txt")).read(),
        "shared": shared_lib.VALUE,
        "pid": os.getpid(),
        "started": STARTED,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
    }
"""

OTHER = """
import os, time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"greeting": os.environ["GREETING"]}
"""

LAYER_MAKEFILE = """
build-SharedLayer:
\tmkdir -p $(ARTIFACTS_DIR)/python $(ARTIFACTS_DIR)/data
\tcp shared_lib.py $(ARTIFACTS_DIR)/python/
\techo layer-data > $(ARTIFACTS_DIR)/data/x.txt
"""


@pytest.fixture
def runtime(tmp_path: Path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for folder, code in (("echo", ECHO), ("other", OTHER)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "app.py").write_text(textwrap.dedent(code))
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "shared_lib.py").write_text("VALUE = 42\n")
    (tmp_path / "layer" / "Makefile").write_text(LAYER_MAKEFILE)
    stack = resolve_stack(tmp_path / "template.yaml", "test-stack")
    builder = LambdaBuilder(stack, tmp_path / "build")
    lambdas = LambdaRuntime(stack, builder, base_env={"AWS_REGION": "us-east-1"}, log_dir=tmp_path / "logs")
    yield lambdas
    lambdas.shutdown()


def test_function_sees_its_env_layers_and_context(runtime):
    result = runtime.invoke("EchoFunction", {})
    assert result["greeting"] == "hello"
    assert result["peer"].endswith(":function:test-stack-OtherFunction-" + result["peer"].rsplit("-", 1)[1])
    assert result["data"].strip() == "layer-data"
    assert result["shared"] == 42
    assert result["function_name"].startswith("test-stack-EchoFunction-")
    assert 0 < result["remaining_ms"] <= 5000
    assert runtime.invoke("OtherFunction", {}) == {"greeting": "other"}


def test_worker_stays_warm_between_invocations(runtime):
    first = runtime.invoke("EchoFunction", {})
    second = runtime.invoke("EchoFunction", {})
    assert first["pid"] == second["pid"]
    assert first["started"] == second["started"]


def test_function_error_keeps_its_type_name(runtime):
    with pytest.raises(LambdaFunctionError) as error:
        runtime.invoke("EchoFunction", {"action": "fail"})
    assert error.value.error_type == "DatasetValidationError"
    assert "003.Cat" in error.value.error_message
    assert any("app.py" in frame for frame in error.value.stack_trace)


def test_undeclared_import_fails_like_on_aws(runtime):
    # yaml and torch are in the venv, but no requirements.txt of this function declares them.
    for module in ("yaml", "torch", "stepsage"):
        with pytest.raises(LambdaFunctionError) as error:
            runtime.invoke("EchoFunction", {"action": "import", "module": module})
        assert error.value.error_type == "ModuleNotFoundError"
    # boto3 ships with the Lambda Python runtime, so it imports without being declared.
    assert runtime.invoke("EchoFunction", {"action": "import", "module": "boto3"}) == {"imported": "boto3"}


def test_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(runtime):
    with pytest.raises(LambdaFunctionError) as error:
        runtime.invoke("OtherFunction", {"sleep": 3})
    assert error.value.error_type == "Sandbox.Timedout"
    assert "1.00 seconds" in error.value.error_message
    assert runtime.invoke("OtherFunction", {}) == {"greeting": "other"}


def test_process_exit_and_marshal_errors(runtime):
    with pytest.raises(LambdaFunctionError) as error:
        runtime.invoke("EchoFunction", {"action": "exit"})
    assert error.value.error_type == "Runtime.ExitError"
    with pytest.raises(LambdaFunctionError) as error:
        runtime.invoke("EchoFunction", {"action": "unserializable"})
    assert error.value.error_type == "Runtime.MarshalError"
    assert runtime.invoke("EchoFunction", {})["greeting"] == "hello"


def test_concurrent_invocations_use_separate_workers(runtime):
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(runtime.invoke("OtherFunction", {"sleep": 0.5})))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"greeting": "other"}] * 3


def test_unknown_function_is_a_key_error(runtime):
    with pytest.raises(KeyError):
        runtime.invoke("NoSuchFunction", {})


def test_a_worker_started_from_a_short_lived_thread_stays_warm(runtime):
    # Linux sends the parent-death signal when the forking *thread* ends; request threads are short-lived.
    first: list[dict] = []
    thread = threading.Thread(target=lambda: first.append(runtime.invoke("EchoFunction", {})))
    thread.start()
    thread.join()
    time.sleep(0.3)
    again = runtime.invoke("EchoFunction", {})
    assert again["pid"] == first[0]["pid"]


def test_an_unhandled_error_is_written_to_the_function_log(runtime, tmp_path):
    with pytest.raises(LambdaFunctionError):
        runtime.invoke("EchoFunction", {"action": "fail"})
    log = (tmp_path / "logs" / "EchoFunction.log").read_text()
    assert "[ERROR] DatasetValidationError: class 003.Cat is empty" in log
