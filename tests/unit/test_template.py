"""template.yaml, parsed with its CloudFormation tags: storage, trigger, functions, roles and wiring."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from stepsage.aws import cfn_yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = cfn_yaml.load(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE["Globals"]["Function"]
ASL_PATH = ROOT / "state_machine" / "pipeline.asl.json"

BUCKETS = ("DataBucket", "ArtifactsBucket")
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
LAYERS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::LayerVersion"}

# SAM policy templates whose expansions name exact actions (checked against the expansion in
# tests/integration/test_template_lint.py); anything else must be an inline statement.
EXACT_POLICY_TEMPLATES = {"S3ReadPolicy", "StepFunctionsExecutionPolicy"}
# Actions that take no resource ARN, so "*" is the only possible Resource.
RESOURCELESS_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "sagemaker:ListEndpoints",
    "sagemaker:ListModels",
    "sagemaker:ListEndpointConfigs",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _function_env(function_id: str) -> dict[str, Any]:
    own = FUNCTIONS[function_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {**GLOBAL_FUNCTION["Environment"]["Variables"], **own}


# --- the loader -------------------------------------------------------------------------------------


def test_loader_reads_short_form_tags_as_their_long_form() -> None:
    parsed = cfn_yaml.loads(
        "A: !Ref Bucket\nB: !GetAtt Role.Arn\nC: !Sub 'arn:${AWS::Partition}:s3:::x'\n"
        "D: !FindInMap [M, !Ref AWS::Region, !FindInMap [N, k, v]]\nE: !Equals [!Ref P, NONE]\n"
    )
    assert parsed == {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::GetAtt": ["Role", "Arn"]},
        "C": {"Fn::Sub": "arn:${AWS::Partition}:s3:::x"},
        "D": {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, {"Fn::FindInMap": ["N", "k", "v"]}]},
        "E": {"Fn::Equals": [{"Ref": "P"}, "NONE"]},
    }


def test_loader_rejects_a_non_mapping_document() -> None:
    with pytest.raises(ValueError, match="mapping"):
        cfn_yaml.loads("- just\n- a list\n")


# --- storage ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_are_encrypted_versioned_and_private(bucket: str) -> None:
    props = RESOURCES[bucket]["Properties"]
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_policies_deny_plain_http(bucket: str) -> None:
    policies = [
        r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(policies) == 1
    denials = [
        s
        for s in policies[0]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denials) == 1
    assert denials[0]["Principal"] == "*" and denials[0]["Action"] == "s3:*"
    assert denials[0]["Resource"] == [
        {"Fn::GetAtt": [bucket, "Arn"]},
        {"Fn::Sub": "${" + bucket + ".Arn}/*"},
    ]


def test_data_bucket_sends_events_to_eventbridge() -> None:
    notifications = RESOURCES["DataBucket"]["Properties"]["NotificationConfiguration"]
    assert notifications["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}


# --- trigger ------------------------------------------------------------------------------------------


def _trigger_pattern() -> dict[str, Any]:
    events = FUNCTIONS["StartPipelineFunction"]["Properties"]["Events"]
    (event,) = events.values()
    assert event["Type"] == "EventBridgeRule"
    return dict(event["Properties"]["Pattern"])


def _key_matches(pattern: dict[str, Any], key: str) -> bool:
    """EventBridge's matching of the key filter (wildcard, suffix, anything-but), as the local cloud's
    dispatcher applies it."""
    from stepsage.local.events import pattern_matches

    return pattern_matches({"key": pattern["detail"]["object"]["key"]}, {"key": key})


def test_trigger_listens_for_object_created_on_the_data_bucket() -> None:
    pattern = _trigger_pattern()
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]


# The rule delivers what can start a run and what the start Lambda answers with a notice (issue 9: an upload
# under datasets/ that cannot start a run is not silence); the Lambda decides which is which
# (tests/unit/test_start_pipeline.py). A folder upload's own objects never invoke it.
@pytest.mark.parametrize(
    ("key", "delivered"),
    [
        ("datasets/dogImages.zip", True),
        ("datasets/dogImages.ZIP", True),
        ("datasets/flowers/_READY", True),
        ("datasets/flowers/_ready", True),
        ("datasets/flowers/_READY.txt", True),
        ("datasets/flowers/train/rose/1.jpg", False),
        ("datasets/flowers/rose/1.jpg", False),
        ("datasets/notes.txt", True),
        ("datasets/digits.tar.gz", True),
    ],
)
def test_trigger_pattern_selects_zip_uploads_and_ready_markers(key: str, delivered: bool) -> None:
    assert _key_matches(_trigger_pattern(), key) is delivered


def test_every_key_the_start_lambda_accepts_reaches_it() -> None:
    naming = (ROOT / "lambdas/common/stepsage_lambda/naming.py").read_text()
    assert "datasets/" in naming, "the start Lambda's key rule moved; update this test"
    for key in ("datasets/a.zip", "datasets/my-set/_READY", "datasets/Dog_Images.zip"):
        assert _key_matches(_trigger_pattern(), key), key


# --- functions and layers -----------------------------------------------------------------------------


def test_runtime_is_python_312_or_newer() -> None:
    for function_id, function in FUNCTIONS.items():
        runtime = function["Properties"].get("Runtime", GLOBAL_FUNCTION["Runtime"])
        assert runtime in {"python3.12", "python3.13"}, function_id


@pytest.mark.parametrize("resource_id", sorted([*FUNCTIONS, *LAYERS]))
def test_every_function_and_layer_builds_with_its_own_makefile_target(resource_id: str) -> None:
    resource = RESOURCES[resource_id]
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    source = resource["Properties"].get("CodeUri") or resource["Properties"]["ContentUri"]
    makefile = (ROOT / source / "Makefile").read_text()
    assert re.search(rf"^(?:[\w-]+ )*build-{resource_id}\b[^:=]*:(?!=)", makefile, re.MULTILINE), makefile


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_every_handler_module_exists(function_id: str) -> None:
    props = FUNCTIONS[function_id]["Properties"]
    module, _, handler = props["Handler"].rpartition(".")
    source = ROOT / props["CodeUri"] / f"{module.replace('.', '/')}.py"
    assert source.is_file(), f"{function_id}: {source} is missing"
    tree = ast.parse(source.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    names |= {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert handler in names, f"{function_id}: {handler} is not defined in {source}"


def test_sagemaker_code_layer_feeds_launch_hpo() -> None:
    props = FUNCTIONS["LaunchHpoFunction"]["Properties"]
    assert {"Ref": "SageMakerCodeLayer"} in props["Layers"]
    assert props["Environment"]["Variables"]["SAGEMAKER_CODE_DIR"] == "/opt/sagemaker_code"
    makefile = (ROOT / LAYERS["SageMakerCodeLayer"]["Properties"]["ContentUri"] / "Makefile").read_text()
    assert "$(ARTIFACTS_DIR)/sagemaker_code" in makefile
    assert "training_code" in makefile and "inference_code" in makefile


def test_globals_attach_the_common_layer_and_no_function_repeats_it() -> None:
    assert GLOBAL_FUNCTION["Layers"] == [{"Ref": "CommonLayer"}]
    for function_id, function in FUNCTIONS.items():
        assert {"Ref": "CommonLayer"} not in function["Properties"].get("Layers", []), function_id


def test_function_url_is_iam_authenticated_unless_opened() -> None:
    url = FUNCTIONS["InferenceFunction"]["Properties"]["FunctionUrlConfig"]
    assert url["AuthType"] == {"Ref": "FunctionUrlAuthType"}
    parameter = TEMPLATE["Parameters"]["FunctionUrlAuthType"]
    assert parameter["Default"] == "AWS_IAM"
    assert parameter["AllowedValues"] == ["AWS_IAM", "NONE"]
    public = {
        r["Properties"]["Action"]: r
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["FunctionName"] == {"Ref": "InferenceFunction"}
    }
    # Both permissions exist only when the URL is opened, and the plain invoke only through the URL.
    assert set(public) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(r["Condition"] == "IsUrlPublic" for r in public.values())
    assert public["lambda:InvokeFunctionUrl"]["Properties"]["FunctionUrlAuthType"] == "NONE"
    assert public["lambda:InvokeFunction"]["Properties"]["InvokedViaFunctionUrl"] is True
    assert TEMPLATE["Conditions"]["IsUrlPublic"] == {"Fn::Equals": [{"Ref": "FunctionUrlAuthType"}, "NONE"]}


# --- IAM ----------------------------------------------------------------------------------------------


def _statements() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for resource_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"]["Policies"]:
                found += [(resource_id, s) for s in policy["PolicyDocument"]["Statement"]]
        elif resource["Type"] == "AWS::Serverless::Function":
            for policy in resource["Properties"].get("Policies", []):
                found += [(resource_id, s) for s in policy.get("Statement", [])]
    return found


def test_every_statement_names_exact_actions() -> None:
    statements = _statements()
    assert len(statements) > 20
    for owner, statement in statements:
        for action in _as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{owner}: {action!r} is not exact"


def test_star_resources_only_for_actions_without_resource_arns() -> None:
    for owner, statement in _statements():
        if statement["Effect"] == "Allow" and "*" in _as_list(statement["Resource"]):
            loose = set(_as_list(statement["Action"])) - RESOURCELESS_ACTIONS
            assert not loose, f"{owner}: {sorted(loose)} on Resource '*'"


def test_function_policy_templates_are_the_exact_ones() -> None:
    for function_id, function in FUNCTIONS.items():
        for policy in function["Properties"].get("Policies", []):
            names = set(policy) - {"Statement"}
            assert names <= EXACT_POLICY_TEMPLATES, f"{function_id}: {names}"


def test_passrole_is_bound_to_the_sagemaker_service() -> None:
    passes = {o: s for o, s in _statements() if "iam:PassRole" in _as_list(s["Action"])}
    assert set(passes) == {"StateMachineRole", "DeployFunction"}
    # Issue 9: jobs run as the training role, models serve as the serving role, and neither passes the other.
    assert passes["StateMachineRole"]["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert passes["DeployFunction"]["Resource"] == {"Fn::GetAtt": ["SageMakerServingRole", "Arn"]}
    for statement in passes.values():
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_state_machine_role_can_run_sync_integrations() -> None:
    rules = {
        tuple(_as_list(s["Action"])): s["Resource"]
        for o, s in _statements()
        if o == "StateMachineRole" and "events:PutRule" in _as_list(s["Action"])
    }
    assert list(rules) == [("events:PutTargets", "events:PutRule", "events:DescribeRule")]
    (resources,) = rules.values()
    suffixes = sorted(r["Fn::Sub"].rsplit(":rule/", 1)[1] for r in resources)
    assert suffixes == [
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        "StepFunctionsGetEventsForSageMakerTuningJobsRule",
    ]


# --- state machine ------------------------------------------------------------------------------------


def test_substitutions_cover_every_asl_placeholder_and_nothing_else() -> None:
    machine = RESOURCES["PipelineStateMachine"]["Properties"]
    assert (ROOT / machine["DefinitionUri"]).resolve() == ASL_PATH
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL_PATH.read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])


def test_function_placeholders_point_at_functions_the_role_may_invoke() -> None:
    substitutions = RESOURCES["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"]
    invoked = {
        name: value["Fn::GetAtt"][0] for name, value in substitutions.items() if name.endswith("FunctionArn")
    }
    assert all(name == f"{function_id}Arn" for name, function_id in invoked.items())
    assert set(invoked.values()) <= set(FUNCTIONS)
    (invoke,) = [
        s for o, s in _statements() if o == "StateMachineRole" and s["Action"] == ["lambda:InvokeFunction"]
    ]
    assert sorted(r["Fn::GetAtt"][0] for r in invoke["Resource"]) == sorted(invoked.values())


def test_asl_is_json_with_placeholders_only_inside_strings() -> None:
    definition = json.loads(ASL_PATH.read_text())
    assert definition["StartAt"] in definition["States"]


def test_state_machine_logs_and_traces() -> None:
    props = RESOURCES["PipelineStateMachine"]["Properties"]
    assert props["Type"] == "STANDARD"
    assert props["Logging"]["Level"] == "ALL"
    destination = props["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert destination == {"Fn::GetAtt": ["PipelineLogGroup", "Arn"]}
    assert props["Tracing"] == {"Enabled": True}


# --- parameters, mappings, outputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "allowed"),
    [
        ("DebuggerMode", ["embedded", "managed", "off"]),
        ("EndpointKind", ["serverless", "realtime"]),
        ("TuningStrategy", ["Bayesian", "Random", "Hyperband", "Grid"]),
        ("UseSpotTraining", ["true", "false"]),
        ("DeployGate", ["rules", "strict", "always"]),
        ("FunctionUrlAuthType", ["AWS_IAM", "NONE"]),
    ],
)
def test_choice_parameters_offer_what_the_lambdas_accept(parameter: str, allowed: list[str]) -> None:
    assert TEMPLATE["Parameters"][parameter]["AllowedValues"] == allowed
    assert TEMPLATE["Parameters"][parameter]["Default"] in allowed


def test_tuning_size_parameters_exist_with_bounds() -> None:
    for name in ("MaxTrainingJobs", "MaxParallelTrainingJobs"):
        parameter = TEMPLATE["Parameters"][name]
        assert parameter["Type"] == "Number" and parameter["MinValue"] == 1


def test_every_offered_instance_type_has_an_image() -> None:
    mappings = TEMPLATE["Mappings"]
    instance_types = mappings["InstanceTypes"]
    for name in ("TrainingInstanceType", "FinalTrainingInstanceType", "EndpointInstanceType"):
        for instance_type in TEMPLATE["Parameters"][name]["AllowedValues"]:
            assert instance_type in instance_types, f"{name}: {instance_type}"
    for region, images in mappings["SageMakerImages"].items():
        assert set(images) == {"TrainingCpu", "TrainingGpu", "InferenceCpu", "InferenceGpu", "DebuggerRules"}
        for key, uri in images.items():
            if key != "DebuggerRules" or uri:
                assert re.fullmatch(
                    rf"\d{{12}}\.dkr\.ecr\.{region}\.amazonaws\.com(\.cn)?/[a-z-]+:[\w.-]+", uri
                )
    for keys in instance_types.values():
        assert set(keys.values()) <= {"TrainingCpu", "TrainingGpu", "InferenceCpu", "InferenceGpu"}


def test_outputs_name_the_url_state_machine_and_buckets() -> None:
    outputs = TEMPLATE["Outputs"]
    assert outputs["InferenceFunctionUrl"]["Value"] == {"Fn::GetAtt": ["InferenceFunctionUrl", "FunctionUrl"]}
    assert outputs["StateMachineArn"]["Value"] == {"Ref": "PipelineStateMachine"}
    assert outputs["DataBucketName"]["Value"] == {"Ref": "DataBucket"}
    assert outputs["ArtifactsBucketName"]["Value"] == {"Ref": "ArtifactsBucket"}


def test_every_checkov_skip_carries_its_reason() -> None:
    skips = [
        (resource_id, skip)
        for resource_id, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for resource_id, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), resource_id
        assert len(skip.get("comment", "").split()) >= 8, f"{resource_id}: {skip['id']} has no real reason"


# --- environment variables against the Lambda code and lambdas/README.md -------------------------------


def _sources(function_id: str) -> list[Path]:
    folder = ROOT / FUNCTIONS[function_id]["Properties"]["CodeUri"]
    return [*folder.glob("*.py"), *(ROOT / "lambdas/common").rglob("*.py")]


# Names a module of the function's folder requires although the function's own handler never reaches
# that code (folders shared by two functions; none are shared now).
NOT_REACHED: dict[str, dict[str, str]] = {}


def _handler_modules(function_id: str) -> list[Path]:
    """The handler's module and the folder's modules it imports, transitively."""
    props = FUNCTIONS[function_id]["Properties"]
    folder = ROOT / props["CodeUri"]
    pending, seen = [folder / (props["Handler"].rpartition(".")[0] + ".py")], []
    while pending:
        module = pending.pop()
        if module in seen or not module.is_file():
            continue
        seen.append(module)
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            pending += [folder / f"{name.split('.')[0]}.py" for name in names]
    return seen


def _required_by_code(function_id: str) -> set[str]:
    """Names read with no default: os.environ["X"], env["X"], or text(env, "X") with two arguments."""
    required: set[str] = set()
    for source in _handler_modules(function_id):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                target = ast.unparse(node.value)
                if target in {"os.environ", "env"} and isinstance(node.slice.value, str):
                    required.add(node.slice.value)
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in {"text", "settings.text"}
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant)
            ):
                required.add(str(node.args[1].value))
    required -= set(NOT_REACHED.get(function_id, {}))
    return {name for name in required if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)}


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_environment_names_are_ones_the_code_reads(function_id: str) -> None:
    code = "\n".join(p.read_text() for p in _sources(function_id))
    unread = [name for name in _function_env(function_id) if f'"{name}"' not in code]
    unread = [n for n in unread if not n.startswith("POWERTOOLS_") and n != "STACK_NAME"]
    assert not unread, f"{function_id} sets {unread}, which its code never reads"


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_environment_has_what_the_code_requires(function_id: str) -> None:
    missing = _required_by_code(function_id) - set(_function_env(function_id))
    assert not missing, f"{function_id} needs {sorted(missing)}"


def _readme_rows() -> dict[str, str]:
    readme = ROOT / "lambdas" / "README.md"
    if not readme.exists():
        pytest.skip("lambdas/README.md is not written yet")
    rows: dict[str, str] = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`\w+Function`( \(.*\))?", cells[1]):
            rows[cells[1].split("`")[1]] = cells[2]
    return rows


def test_readme_lists_every_function_of_the_template() -> None:
    assert set(_readme_rows()) == set(FUNCTIONS)


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_environment_has_what_the_readme_marks_required(function_id: str) -> None:
    row = _readme_rows().get(function_id, "")
    required = set(re.findall(r"`([A-Z][A-Z0-9_]+)` \((?:required|both required)", row))
    # "`A`, `B` (both required)": the name before the last one is required too.
    for first, _second in re.findall(r"`([A-Z][A-Z0-9_]+)`, `([A-Z][A-Z0-9_]+)` \(both required", row):
        required.add(first)
    missing = required - set(_function_env(function_id))
    assert not missing, f"{function_id}: lambdas/README.md marks {sorted(missing)} required"
