"""argparse types that refuse a bad value before any work starts: ports, numbers, ARNs, stack names."""

from __future__ import annotations

import argparse
import math
import re
import zipfile
from pathlib import Path

from stepsage.user_errors import UserError

# arn:<partition>:states:<region>:<account>:execution:<state machine>:<execution>. Step Functions names are 1
# to 80 characters without whitespace, brackets, wildcards, control characters or " # % \ ^ | ~ ` $ & , ; : /.
_SFN_NAME = r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}"
EXECUTION_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:states:[a-z]{2}(?:-[a-z]+)+-[0-9]:[0-9]{12}:execution:"
    rf"(?P<state_machine>{_SFN_NAME}):(?P<name>{_SFN_NAME})"
)
EXECUTION_ARN_SHAPE = "arn:aws:states:<region>:<12-digit account>:execution:<state machine>:<execution name>"
# CloudFormation's stack name rule.
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")


def execution_arn(text: str) -> str:
    """A Step Functions execution ARN, checked for its shape before any AWS call."""
    if EXECUTION_ARN.fullmatch(text) is None:
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r} is not an execution ARN: expected {EXECUTION_ARN_SHAPE}")
    return text


def stack_name(text: str) -> str:
    if STACK_NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stack name: a letter, then up to 127 letters, digits and hyphens"
        )
    return text


def port(text: str) -> int:
    """A TCP port; 0 asks the system for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0 to 65535")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 must be 1 or more")
    return value


def parameter_overrides(items: list[str]) -> dict[str, str]:
    """`--parameter Name=Value` items as a dict; the template checks names and values (local.template)."""
    overrides: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--parameter {item!r}: expected NAME=VALUE, e.g. --parameter DeployGate=always")
        overrides[name] = value
    return overrides


def dataset_path(path: Path) -> Path:
    """A dataset a user named: an existing folder, or a file that is a zip archive."""
    if not path.exists():
        raise UserError(f"no such dataset: {path} (expected a .zip or an ImageFolder folder)")
    if path.is_dir():
        return path
    if not path.is_file():
        raise UserError(f"{path} is neither a file nor a folder")
    try:
        with path.open("rb") as handle:
            is_zip = zipfile.is_zipfile(handle)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from error
    if not is_zip:
        raise UserError(f"{path} is not a zip archive (expected a .zip or an ImageFolder folder)")
    return path


def output_folder(path: Path) -> Path:
    """A folder to write into: it may exist, but not as a file."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a folder")
    return path
