"""Load CloudFormation/SAM YAML into its JSON form: `!Ref X` becomes {"Ref": "X"}, `!Sub s` {"Fn::Sub": s}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Short-form tag -> long-form key, as the CloudFormation template reference lists them.
SHORT_FORMS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "Base64": "Fn::Base64",
    "Cidr": "Fn::Cidr",
    "FindInMap": "Fn::FindInMap",
    "GetAtt": "Fn::GetAtt",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "Sub": "Fn::Sub",
    "Transform": "Fn::Transform",
    "And": "Fn::And",
    "Equals": "Fn::Equals",
    "If": "Fn::If",
    "Not": "Fn::Not",
    "Or": "Fn::Or",
    "ToJsonString": "Fn::ToJsonString",
    "Length": "Fn::Length",
}


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that also reads the intrinsic-function tags."""


def _constructor(long_form: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            # `!GetAtt Res.Attr` is the one short form whose scalar means a list.
            if long_form == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:  # pragma: no cover - yaml has no other node kinds
            raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}", node.start_mark)
        return {long_form: value}

    return construct


for _short, _long in SHORT_FORMS.items():
    CfnLoader.add_constructor("!" + _short, _constructor(_long))


def loads(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=CfnLoader)
    if not isinstance(document, dict):
        raise ValueError("a template must be a mapping at its top level")
    return document


def load(path: str | Path) -> dict[str, Any]:
    return loads(Path(path).read_text(encoding="utf-8"))
