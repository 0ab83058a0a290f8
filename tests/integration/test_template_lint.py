"""Deploy-time checks: sam validate, cfn-lint, checkov, asl-validator, Mappings, expanded IAM, sam build."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import re
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from stepsage.aws import cfn_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
TEMPLATE_PATH = ROOT / "template.yaml"
ASL_PATH = ROOT / "state_machine" / "pipeline.asl.json"
REGION, ACCOUNT = "us-east-1", "123456789012"
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


def _tool(relative: str) -> Path:
    path = TOOLS / relative
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is missing: run `make tools` to create the tool environments")
    return path


def _run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=TOOL_ENV, capture_output=True, text=True, timeout=timeout)


def _placeholder_values(template: dict[str, Any]) -> dict[str, str]:
    """A valid ARN or name for each DefinitionSubstitution, from the kind of resource it refers to."""
    resources = template["Resources"]
    values: dict[str, str] = {}
    substitutions = resources["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"]
    for name, value in substitutions.items():
        logical_id = value["Fn::GetAtt"][0] if "Fn::GetAtt" in value else value["Ref"]
        kind = resources[logical_id]["Type"]
        values[name] = {
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{logical_id}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical_id}",
            "AWS::S3::Bucket": logical_id.lower(),
        }[kind]
    return values


def _filled_asl() -> str:
    values = _placeholder_values(cfn_yaml.load(TEMPLATE_PATH))
    text = ASL_PATH.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, "a placeholder has no substitution"
    return text


def test_sam_validate_lint() -> None:
    sam = _tool("sam/bin/sam")
    result = _run([str(sam), "validate", "--lint", "--template-file", str(TEMPLATE_PATH), "--region", REGION])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_on_the_asl_inline(tmp_path: Path) -> None:
    cfn_lint = _tool("sam/bin/cfn-lint")
    wrapper = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Pipeline": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineType": "STANDARD",
                    "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/StateMachineRole",
                    "Definition": json.loads(_filled_asl()),
                },
            }
        },
    }
    path = tmp_path / "asl-wrapper.json"
    path.write_text(json.dumps(wrapper))
    result = _run([str(cfn_lint), "--regions", REGION, "--", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_asl(tmp_path: Path) -> None:
    """The wrapper really lints the definition: cfn-lint checks its schema (not its transitions)."""
    cfn_lint = _tool("sam/bin/cfn-lint")
    definition = json.loads(_filled_asl())
    first = definition["States"][definition["StartAt"]]
    first["TimeoutSeconds"] = "fifteen minutes"
    wrapper = {
        "Resources": {
            "Pipeline": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/R", "Definition": definition},
            }
        }
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(wrapper))
    result = _run([str(cfn_lint), "--regions", REGION, "--", str(path)])
    assert result.returncode != 0
    assert "E3601" in result.stdout and "fifteen minutes" in result.stdout


def test_checkov_has_no_failed_checks_and_every_skip_is_reasoned() -> None:
    checkov = _tool("checkov/bin/checkov")
    result = _run(
        [
            str(checkov),
            "-f",
            str(TEMPLATE_PATH),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and result.returncode == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 30
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"].get("suppress_comment"), f"{check['check_id']} skipped without a reason"


def test_asl_validator_accepts_the_definition(tmp_path: Path) -> None:
    validator = _tool("node/node_modules/.bin/asl-validator")
    path = tmp_path / "pipeline.asl.json"
    path.write_text(_filled_asl())
    result = _run([str(validator), "--json-path", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_catches_a_dangling_transition(tmp_path: Path) -> None:
    validator = _tool("node/node_modules/.bin/asl-validator")
    definition = json.loads(_filled_asl())
    definition["States"][definition["StartAt"]]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(definition))
    result = _run([str(validator), "--json-path", str(path)])
    assert result.returncode != 0
    assert "NoSuchState" in result.stdout + result.stderr


def test_committed_mappings_match_the_sagemaker_sdk() -> None:
    python = _tool("sagemaker/bin/python")
    result = _run([str(python), "scripts/generate_mappings.py", "--check"])
    assert result.returncode == 0, "template.yaml Mappings are stale; run `make mappings`\n" + result.stdout


def _expanded_template() -> dict[str, Any]:
    """template.yaml through SAM's own translator, as CloudFormation receives it (local URIs stubbed)."""
    python = _tool("sam/bin/python")
    script = (
        "import json, sys\n"
        "from samcli.yamlhelper import yaml_parse\n"
        "from samtranslator.translator.transform import transform\n"
        "template = yaml_parse(open(sys.argv[1]).read())\n"
        "for resource in template['Resources'].values():\n"
        "    props = resource.get('Properties', {})\n"
        "    for key in ('CodeUri', 'ContentUri', 'DefinitionUri'):\n"
        "        if isinstance(props.get(key), str):\n"
        "            props[key] = 's3://placeholder-bucket/placeholder-key'\n"
        "class NoManagedPolicyNames:\n"
        "    def load(self):\n"
        "        return {}\n"
        "print(json.dumps(transform(template, {}, NoManagedPolicyNames())))\n"
    )
    result = _run([str(python), "-c", script, str(TEMPLATE_PATH)])
    assert result.returncode == 0, result.stderr
    expanded: dict[str, Any] = json.loads(result.stdout)
    return expanded


def test_every_role_after_sam_expansion_names_exact_actions() -> None:
    expanded = _expanded_template()
    roles = {k: r for k, r in expanded["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    # SAM adds one role per function; ours are the SageMaker and state machine roles.
    assert {"SageMakerExecutionRole", "StateMachineRole", "StartPipelineFunctionRole"} <= set(roles)
    allowed_managed = {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    }
    for role_id, role in roles.items():
        managed = {
            m if isinstance(m, str) else json.dumps(m)
            for m in role["Properties"].get("ManagedPolicyArns", [])
        }
        assert managed <= allowed_managed, f"{role_id}: {managed - allowed_managed}"
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                for action in actions:
                    assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{role_id}: {action!r}"


def test_sam_build_ships_the_training_and_inference_code(tmp_path: Path) -> None:
    """A real `sam build` of the code layer (no PyPI needed).

    SAM copies ContentUri to a scratch folder; the Makefile still finds training_code/ and inference_code/
    through its own location, and LaunchHpo's bundler accepts what the layer holds.
    """
    sam = _tool("sam/bin/sam")
    build_dir = tmp_path / "build"
    result = _run(
        [
            str(sam),
            "build",
            "SageMakerCodeLayer",
            "--template-file",
            str(TEMPLATE_PATH),
            "--build-dir",
            str(build_dir),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    code_dir = build_dir / "SageMakerCodeLayer" / "sagemaker_code"
    for folder in ("training_code", "inference_code"):
        comparison = filecmp.dircmp(ROOT / folder, code_dir / folder, ignore=["__pycache__"])
        assert not comparison.left_only and not comparison.diff_files, (folder, comparison.left_only)
    assert not list(code_dir.rglob("__pycache__"))

    spec = importlib.util.spec_from_file_location(
        "launch_code_bundle", ROOT / "lambdas/launch_hpo/code_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    tarball = bundle.build_sourcedir(code_dir)
    with tarfile.open(fileobj=BytesIO(tarball)) as archive:
        names = set(archive.getnames())
    assert "train.py" in names and "inference_code/inference.py" in names
