"""`stepsage aws teardown` parses its options and keeps its tag in step with the deploy Lambda's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stepsage.aws.teardown import STACK_TAG
from stepsage.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_teardown_options_parse() -> None:
    args = build_parser().parse_args(
        ["aws", "teardown", "--stack", "demo", "--dry-run", "--region", "eu-west-1"]
    )
    assert args.stack == "demo"
    assert args.dry_run is True
    assert args.region == "eu-west-1"
    assert args.delete_stack is False
    assert callable(args.func)


def test_teardown_requires_a_stack(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["aws", "teardown"])
    assert exit_info.value.code == 2
    assert "--stack" in capsys.readouterr().err


def test_stack_tag_matches_the_one_the_deploy_lambda_writes() -> None:
    naming = ast.parse((ROOT / "lambdas/common/stepsage_lambda/naming.py").read_text())
    assigned = {
        node.targets[0].id: node.value.value
        for node in naming.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    assert assigned["STACK_TAG"] == STACK_TAG


def test_unconfirmed_teardown_deletes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["aws", "teardown", "--stack", "demo"])
    monkeypatch.setattr("builtins.input", lambda prompt: "not-the-stack")

    def fail_if_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("teardown ran without confirmation")

    monkeypatch.setattr("stepsage.aws.cli.teardown", fail_if_called)
    assert args.func(args) == 1
