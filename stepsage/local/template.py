"""Read template.yaml (CloudFormation + SAM) into the resources the local cloud runs, intrinsics resolved."""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepsage.aws import cfn_yaml

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template into its JSON form (`!Ref X` -> {"Ref": "X"})."""
    stat = Path(path).stat()
    return copy.deepcopy(_parsed(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parsed(path: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    """One parse per version of the file (the key changes when it is edited)."""
    return cfn_yaml.load(path)


class TemplateError(ValueError):
    """The template uses something the local cloud cannot resolve."""


class ParameterError(TemplateError):
    """A parameter value the template itself refuses, as CloudFormation would (a user's mistake)."""


# What CloudFormation takes for a Number parameter: an integer or a decimal, no spaces, no exponent.
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _number(text: str) -> float | None:
    return float(text) if NUMBER.fullmatch(text) else None


def _shown(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def check_parameter(name: str, value: str, spec: dict[str, Any]) -> None:
    """Raise ParameterError when CloudFormation would refuse `value` for the parameter `spec` declares."""
    kind = str(spec.get("Type", "String"))
    allowed = spec.get("AllowedValues")
    if kind == "Number":
        number = _number(value)
        if number is None:
            raise ParameterError(f"parameter {name}={value!r}: must be a number")
        if allowed is not None and all(_number(str(a)) != number for a in allowed):
            raise ParameterError(f"parameter {name}={value!r}: must be one of {_shown(allowed)}")
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ParameterError(f"parameter {name}={value!r}: must be at least {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ParameterError(f"parameter {name}={value!r}: must be at most {spec['MaxValue']}")
        return
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise ParameterError(f"parameter {name}={value!r}: must be one of {_shown(allowed)}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise ParameterError(f"parameter {name}: must be at least {spec['MinLength']} characters")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise ParameterError(f"parameter {name}: must be at most {spec['MaxLength']} characters")
    # CloudFormation matches AllowedPattern against the whole value.
    if "AllowedPattern" in spec and re.fullmatch(str(spec["AllowedPattern"]), value) is None:
        detail = spec.get("ConstraintDescription") or f"must match {spec['AllowedPattern']}"
        raise ParameterError(f"parameter {name}={value!r}: {detail}")


def check_overrides(template: dict[str, Any], overrides: dict[str, str]) -> None:
    """Each override names a parameter the template declares and fits its bounds; the template is the only
    source of both, so a parameter added there is accepted here without a change."""
    declared = template.get("Parameters") or {}
    for name, value in overrides.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=3, cutoff=0.6)
            close += [n for n in declared if n.lower() == name.lower() and n not in close]
            hint = (
                f"; did you mean {' or '.join(close)}?"
                if close
                else f"; the parameters are: {_shown(list(declared))}"
            )
            raise ParameterError(f"unknown parameter {name!r}{hint}")
        check_parameter(name, value, declared[name])


def check_rules(template: dict[str, Any], resolver: _Resolver) -> None:
    """The template's Rules section, as CloudFormation checks it before creating anything."""
    for rule_name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions") or []:
            if not resolver.resolve(assertion["Assert"]):
                description = assertion.get("AssertDescription") or f"template rule {rule_name} failed"
                raise ParameterError(" ".join(str(description).split()))


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_mb: int
    environment: dict[str, str]
    layers: list[str]  # logical ids of LayerVersion resources
    build_method: str | None
    function_url_auth: str | None


@dataclass
class LocalLayer:
    logical_id: str
    content_uri: Path
    build_method: str | None


@dataclass
class EventRule:
    logical_id: str
    pattern: dict[str, Any]
    target_function_ids: list[str]


@dataclass
class LocalStateMachine:
    logical_id: str
    name: str
    arn: str
    definition: str
    role_arn: str


@dataclass
class LocalStack:
    """The template's resources, resolved for one local stack."""

    name: str
    root: Path
    parameters: dict[str, str]
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    bucket_eventbridge: dict[str, bool] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic arn
    roles: dict[str, str] = field(default_factory=dict)  # logical id -> role arn
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    layers: dict[str, LocalLayer] = field(default_factory=dict)
    rules: list[EventRule] = field(default_factory=list)
    state_machines: dict[str, LocalStateMachine] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def function_by_arn(self, arn_or_name: str) -> LocalFunction:
        name = arn_or_name.split(":function:")[-1].split(":")[0]
        for function in self.functions.values():
            if function.name == name or function.logical_id == name:
                return function
        raise KeyError(arn_or_name)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class _Resolver:
    """Evaluates intrinsics against parameters, conditions, mappings and local physical ids."""

    def __init__(self, template: dict[str, Any], stack: str, parameters: dict[str, str]) -> None:
        self.template = template
        self.stack = stack
        self.parameters = parameters
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self.conditions: dict[str, bool] = {}
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        for name, expression in (template.get("Conditions") or {}).items():
            self.conditions[name] = bool(self.resolve(expression))

    def physical_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        kind = resource.get("Type", "")
        props = resource.get("Properties") or {}
        explicit_key = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Serverless::StateMachine": "Name",
            "AWS::StepFunctions::StateMachine": "StateMachineName",
            "AWS::IAM::Role": "RoleName",
        }.get(kind)
        if explicit_key and props.get(explicit_key) is not None:
            return str(self.resolve(props[explicit_key]))
        # CloudFormation's generated names: stack, logical id and a random suffix (here a stable hash).
        base = f"{self.stack}-{logical_id}"
        if kind == "AWS::S3::Bucket":
            base = base.lower()
        return f"{base}-{_short_hash(self.stack + logical_id)}"

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        kind = self.resources[name]["Type"]
        physical = self.physical_name(name)
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{physical}"
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{physical}"
        if kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{physical}:1"
        return physical

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        kind = self.resources[logical_id]["Type"]
        physical = self.physical_name(logical_id)
        if attribute == "Arn":
            return {
                "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
                "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}",
                "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}",
                "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{physical}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{physical}:*",
                "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{physical}",
            }.get(kind, f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{logical_id}/{physical}")
        if attribute in ("Name", "TopicName", "StateMachineName"):
            return physical
        if attribute == "DomainName":
            return f"{physical}.s3.amazonaws.com"
        if attribute == "RegionalDomainName":
            return f"{physical}.s3.{REGION}.amazonaws.com"
        # SAM's generated Function URL resource and other attributes the local cloud fills in later.
        return f"local://{logical_id}.{attribute}"

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if "." in token and token.split(".", 1)[0] in self.resources:
                return str(self.get_att(*token.split(".", 1)))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(self.resolve(arg))
            if key == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else self.resolve(arg)
                return self.get_att(parts[0], parts[1])
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self.sub(self.resolve(arg[0]), {k: self.resolve(v) for k, v in arg[1].items()})
                return self.sub(arg, {})
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::If":
                branch = arg[1] if self.conditions[arg[0]] else arg[2]
                return self.resolve(branch)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Contains":
                items, item = self.resolve(arg)
                return str(item) in [str(i) for i in items]
            if key == "Condition":
                return self.conditions[arg]
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key == "Fn::Split":
                delimiter, text = self.resolve(arg)
                return str(text).split(delimiter)
            if key == "Fn::FindInMap":
                name, top, second = self.resolve(arg)
                return self.template["Mappings"][name][top][second]
            if key == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::GetAZs":
                return [REGION + "a", REGION + "b"]
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not None}


def _merge_globals(props: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge, lists append (Globals first), anything else is overridden."""
    merged = dict(defaults)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(value, merged[key])
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _rule_from_sam_event(function_id: str, event_id: str, event: dict[str, Any]) -> EventRule | None:
    if event.get("Type") not in ("EventBridgeRule", "CloudWatchEvent"):
        return None
    pattern = (event.get("Properties") or {}).get("Pattern") or {}
    return EventRule(f"{function_id}{event_id}", pattern, [function_id])


def resolve_stack(
    template_path: str | Path, stack_name: str = "stepsage-local", overrides: dict[str, str] | None = None
) -> LocalStack:
    """Everything the local cloud needs from the template, resolved for `stack_name`."""
    template_path = Path(template_path).resolve()
    root = template_path.parent
    template = load_template(template_path)
    parameters: dict[str, str] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if "Default" in spec:
            parameters[name] = str(spec["Default"])
    check_overrides(template, overrides or {})
    parameters.update(overrides or {})
    missing = [n for n in (template.get("Parameters") or {}) if n not in parameters]
    if missing:
        raise ParameterError(f"parameters without a default need a value: {', '.join(missing)}")
    resolver = _Resolver(template, stack_name, parameters)
    check_rules(template, resolver)
    stack = LocalStack(name=stack_name, root=root, parameters=parameters)
    function_globals = ((template.get("Globals") or {}).get("Function")) or {}

    for logical_id, resource in resolver.resources.items():
        condition = resource.get("Condition")
        if condition and not resolver.conditions.get(condition, True):
            continue
        kind = resource.get("Type")
        raw_props = resource.get("Properties") or {}
        if kind == "AWS::S3::Bucket":
            stack.buckets[logical_id] = resolver.ref(logical_id)
            props = resolver.resolve(raw_props)
            stack.bucket_eventbridge[logical_id] = bool(
                ((props.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {}).get(
                    "EventBridgeEnabled"
                )
            )
        elif kind == "AWS::SNS::Topic":
            stack.topics[logical_id] = resolver.ref(logical_id)
        elif kind == "AWS::IAM::Role":
            stack.roles[logical_id] = resolver.get_att(logical_id, "Arn")
        elif kind in ("AWS::Serverless::LayerVersion",):
            props = resolver.resolve(raw_props)
            stack.layers[logical_id] = LocalLayer(
                logical_id,
                (root / props["ContentUri"]).resolve(),
                (resource.get("Metadata") or {}).get("BuildMethod"),
            )
        elif kind == "AWS::Serverless::Function":
            props = resolver.resolve(_merge_globals(raw_props, function_globals))
            layers = []
            for layer in _merge_globals(raw_props, function_globals).get("Layers", []):
                if isinstance(layer, dict) and "Ref" in layer:
                    layers.append(layer["Ref"])
            environment = {
                k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
            }
            url_config = props.get("FunctionUrlConfig")
            stack.functions[logical_id] = LocalFunction(
                logical_id=logical_id,
                name=resolver.physical_name(logical_id),
                arn=resolver.get_att(logical_id, "Arn"),
                code_uri=(root / props.get("CodeUri", ".")).resolve(),
                handler=props["Handler"],
                runtime=props.get("Runtime", "python3.12"),
                timeout=int(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                environment=environment,
                layers=layers,
                build_method=(resource.get("Metadata") or {}).get("BuildMethod"),
                function_url_auth=url_config.get("AuthType") if url_config else None,
            )
            for event_id, event in (props.get("Events") or {}).items():
                rule = _rule_from_sam_event(logical_id, event_id, event)
                if rule:
                    stack.rules.append(rule)
        elif kind == "AWS::Events::Rule":
            props = resolver.resolve(raw_props)
            targets = []
            for target in props.get("Targets", []):
                try:
                    targets.append(stack_function_id_for_arn(resolver, target["Arn"]))
                except KeyError:
                    continue
            stack.rules.append(EventRule(logical_id, props.get("EventPattern") or {}, targets))
        elif kind in ("AWS::Serverless::StateMachine",):
            props = resolver.resolve(raw_props)
            if "DefinitionUri" in props:
                definition = (root / props["DefinitionUri"]).read_text(encoding="utf-8")
            else:
                import json

                definition = json.dumps(props["Definition"])
            for key, value in (props.get("DefinitionSubstitutions") or {}).items():
                definition = definition.replace("${" + key + "}", str(value))
            name = resolver.physical_name(logical_id)
            role = props.get("Role") or f"arn:aws:iam::{ACCOUNT_ID}:role/{stack_name}-{logical_id}Role"
            stack.state_machines[logical_id] = LocalStateMachine(
                logical_id, name, resolver.ref(logical_id), definition, role
            )
    for name, output in (template.get("Outputs") or {}).items():
        try:
            stack.outputs[name] = resolver.resolve(output.get("Value"))
        except (TemplateError, KeyError):
            stack.outputs[name] = None
    return stack


def stack_function_id_for_arn(resolver: _Resolver, arn: str) -> str:
    for logical_id, resource in resolver.resources.items():
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function") and (
            resolver.get_att(logical_id, "Arn") == arn
        ):
            return logical_id
    raise KeyError(arn)
