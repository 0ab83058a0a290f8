"""The local Step Functions engine against 256 executions recorded on AWS (../shared/conformance)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stepsage.local.stepfunctions import StepFunctionsService

pytestmark = pytest.mark.integration

CASES_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "sfn_cases.json"
REQUIRED_PASSES = 242
ROLE_ARN = "arn:aws:iam::123456789012:role/StepFunctionsRole"

_PLACEHOLDER_INPUT = (
    "the recorded input is LocalStack's snapshot placeholder ('date'/'timestamp') where AWS ran a real "
    "ISO-8601 timestamp, so the Wait state rightly rejects it here"
)
# Every case known to differ from AWS, with the reason. An unlisted failure, or a listed case that
# starts passing, fails the test: the list stays exact.
KNOWN_DEVIATIONS: dict[str, str] = {
    "scenarios/test_wait_timestamp_path[None]/get_execution_history": _PLACEHOLDER_INPUT,
    "scenarios/test_wait_timestamp_path[SECONDS]/get_execution_history": _PLACEHOLDER_INPUT,
    "scenarios/test_wait_timestamp_path[NANOSECONDS]/get_execution_history": _PLACEHOLDER_INPUT,
    "scenarios/test_wait_timestamp_jsonata[None]/get_execution_history": _PLACEHOLDER_INPUT,
    "scenarios/test_wait_timestamp_jsonata[SECONDS]/get_execution_history": _PLACEHOLDER_INPUT,
    "scenarios/test_wait_timestamp_jsonata[NANOSECONDS]/get_execution_history": _PLACEHOLDER_INPUT,
}


def _load_cases() -> list[dict[str, Any]]:
    if not CASES_PATH.exists():
        return []
    return json.loads(CASES_PATH.read_text())["cases"]


CASES = _load_cases()


def _matches(actual: Any, expected: Any) -> bool:
    """Equality, except that LocalStack's placeholders (`<uuid:1>`, `<ArnPart_0idx>`) match any text."""
    if isinstance(expected, str) and re.search(r"<[^<>]+>", expected):
        if not isinstance(actual, str):
            return False
        pattern = re.sub(r"<[^<>]+>", ".+?", re.escape(expected).replace(r"\<", "<").replace(r"\>", ">"))
        # The recordings replace the account id as well.
        pattern = pattern.replace("111111111111", r"\d{12}")
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(_matches(actual[key], expected[key]) for key in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_matches(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return bool(actual == expected)


def _expected_output(expected: dict[str, Any]) -> Any:
    output = expected["output"]
    # Some recordings keep the output as the JSON text AWS returned.
    if isinstance(output, str):
        try:
            return json.loads(output)
        except json.JSONDecodeError:
            return output
    return output


def _differences(service: StepFunctionsService, index: int, case: dict[str, Any]) -> str | None:
    """None when the execution matches the recording, else what differs."""
    machine = service.handle(
        "CreateStateMachine",
        {"name": f"conformance-{index}", "definition": json.dumps(case["definition"]), "roleArn": ROLE_ARN},
    )
    started = service.handle(
        "StartExecution",
        {"stateMachineArn": machine["stateMachineArn"], "name": "case", "input": json.dumps(case["input"])},
    )
    result = service.wait(started["executionArn"], timeout=30)
    expected = case["expected"]
    if result["status"] != expected["status"]:
        got = f"{result['status']} ({result.get('error')}: {result.get('cause')})"
        return f"status {got}, AWS {expected['status']}"
    if expected["status"] == "SUCCEEDED":
        output = json.loads(result["output"])
        if not _matches(output, _expected_output(expected)):
            return f"output {output!r}, AWS {expected['output']!r}"
        return None
    if result.get("error") != expected.get("error"):
        return f"error {result.get('error')!r}, AWS {expected.get('error')!r}"
    return None


@pytest.fixture(scope="module")
def service() -> Any:
    def no_lambda(function_arn: str, payload: dict) -> Any:
        raise AssertionError(f"the conformance cases call no Lambda, yet {function_arn} was invoked")

    class NoSageMaker:
        def handle(self, operation: str, params: dict) -> dict:
            raise AssertionError(f"the conformance cases call no SageMaker, yet {operation} was called")

    # Waits in the recordings are a few seconds at most; scaled down, they cost nothing.
    local = StepFunctionsService(no_lambda, NoSageMaker(), aws_endpoint_url=None, time_scale=0.001)
    yield local
    local.shutdown()


@pytest.mark.skipif(not CASES, reason=f"conformance cases not found at {CASES_PATH} (outside a fresh clone)")
@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(CASES)), ids=[case["id"] for case in CASES] if CASES else None
)
def test_case_matches_aws(service: StepFunctionsService, index: int, case: dict[str, Any]) -> None:
    difference = _differences(service, index, case)
    if case["id"] in KNOWN_DEVIATIONS:
        assert difference is not None, (
            f"{case['id']} now matches AWS: remove it from KNOWN_DEVIATIONS ({KNOWN_DEVIATIONS[case['id']]})"
        )
    else:
        assert difference is None, difference


@pytest.mark.skipif(not CASES, reason=f"conformance cases not found at {CASES_PATH} (outside a fresh clone)")
def test_deviation_list_is_exact_and_within_the_bar() -> None:
    case_ids = {case["id"] for case in CASES}
    assert set(KNOWN_DEVIATIONS) <= case_ids, set(KNOWN_DEVIATIONS) - case_ids
    assert len(CASES) - len(KNOWN_DEVIATIONS) >= REQUIRED_PASSES
