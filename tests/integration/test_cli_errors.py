"""The CLI's error boundary: each class of user mistake gets one stderr line and exit 2, never a traceback.

The real command runs in a subprocess (`python -m stepsage.cli ...`) for every class; the generated bulk of
each class also goes through `main()` in process, which is the same boundary without the start-up cost.
"""

from __future__ import annotations

import os
import random
import socket
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepsage.cli import main
from stepsage.local.template import load_template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARAMETERS = load_template(ROOT / "template.yaml")["Parameters"]
GOOD_ARN = "arn:aws:states:us-east-1:123456789012:execution:stepsage-local-Pipeline-1a2b3c4d:run-1"
RNG = random.Random(2024)


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS settings from this machine: no credentials, config files or endpoint unless a test adds them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(tmp_path / "home"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        STEPSAGE_LOCAL_STATE=str(tmp_path / "state"),
    )
    env.update(extra)
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepsage.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _assert_one_user_error_line(stderr: str, code: int, command: str, *expected: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"stepsage {command}: " if command else "stepsage: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _never_start_a_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case here must fail before the local cloud builds: one that got that far is a failed test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a user error case went on to build the local cloud")

    monkeypatch.setattr("stepsage.local.cloud.LocalCloud.build", refuse)


def _in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------ the classes, in a subprocess


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return _clean_env(tmp_path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "digits"
    (folder / "train" / "a").mkdir(parents=True)
    return folder


SUBPROCESS_CASES = {
    "unknown parameter": (
        ["local", "up", "--parameter", "DeployGat=always"],
        "local up",
        ["unknown parameter 'DeployGat'", "did you mean DeployGate"],
    ),
    "value outside AllowedValues": (
        ["local", "up", "--parameter", "DeployGate=sometimes"],
        "local up",
        ["DeployGate='sometimes'", "must be one of rules, strict, always"],
    ),
    "value above MaxValue": (
        ["local", "run", "DATASET", "--parameter", "ServerlessMaxConcurrency=201"],
        "local run",
        ["ServerlessMaxConcurrency", "at most 200"],
    ),
    "value outside AllowedPattern": (
        ["local", "run", "DATASET", "--parameter", "ImageSize=9000"],
        "local run",
        ["ImageSize='9000'"],
    ),
    "DebuggerMode=off without DeployGate=always": (
        ["local", "run", "DATASET", "--parameter", "DebuggerMode=off"],
        "local run",
        ["DebuggerMode=off", "DeployGate=always"],
    ),
    "parameter without =": (["local", "up", "--parameter", "DeployGate"], "local up", ["NAME=VALUE"]),
    "dataset path that does not exist": (
        ["local", "run", "no/such/data.zip"],
        "local run",
        ["no such dataset: no/such/data.zip"],
    ),
    "dataset that is not a zip": (["local", "run", "README.md"], "local run", ["not a zip archive"]),
    "dataset name outside the grammar": (
        ["local", "run", "DATASET", "--name", "../etc"],
        "local run",
        ["../etc"],
    ),
    "malformed ARN": (
        ["report", "arn:aws:states:us-east-1:123:execution:sm:run"],
        "report",
        ["is not an execution ARN", "arn:aws:states:<region>"],
    ),
    "no credentials": (["report", GOOD_ARN, "--out", "OUT"], "report", ["no AWS credentials found", "4566"]),
    "no region": (["aws", "teardown", "--stack", "stepsage", "--yes"], "aws teardown", ["no AWS region"]),
    "argparse: unknown subcommand": (["lcoal", "up"], "", ["invalid choice: 'lcoal'"]),
    "argparse: unknown option": (["local", "up", "--prot", "1"], "local up", ["unrecognized arguments"]),
    "argparse: bad port": (["local", "up", "--port", "70000"], "local up", ["outside 0 to 65535"]),
    "argparse: missing argument": (["report"], "report", ["required: EXECUTION_ARN"]),
}


@pytest.mark.parametrize("case", sorted(SUBPROCESS_CASES))
def test_each_class_is_one_line_and_exit_2(
    case: str, env: dict[str, str], dataset: Path, tmp_path: Path
) -> None:
    args, command, expected = SUBPROCESS_CASES[case]
    args = [str(dataset) if a == "DATASET" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    done = _cli(args, env, ROOT)
    _assert_one_user_error_line(done.stderr, done.returncode, command, *expected)
    # Nothing was built or started on the way to the error.
    assert not (tmp_path / "state").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_reachable_endpoint_says_how_to_point_at_the_local_cloud(
    env: dict[str, str], tmp_path: Path
) -> None:
    env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_REGION="us-east-1")
    url = f"http://127.0.0.1:{_free_port()}"
    for args in (
        ["report", GOOD_ARN, "--endpoint-url", url, "--out", str(tmp_path / "r")],
        ["--debug", "report", GOOD_ARN, "--out", str(tmp_path / "r")],
    ):
        done = _cli(args, {**env, "AWS_ENDPOINT_URL": url}, ROOT)
        if args[0] == "--debug":
            # --debug adds the traceback; the last line is still the one-line message.
            assert done.returncode == 2 and "Traceback" in done.stderr, done.stderr
            assert done.stderr.strip().splitlines()[-1].startswith("stepsage report: cannot reach")
            continue
        _assert_one_user_error_line(done.stderr, done.returncode, "report", f"cannot reach {url}", "local up")


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_aws_refusals_are_user_errors(moto_endpoint: str, env: dict[str, str], tmp_path: Path) -> None:
    env.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto_endpoint,
    )
    done = _cli(["report", GOOD_ARN, "--out", str(tmp_path / "r")], env, ROOT)
    _assert_one_user_error_line(
        done.stderr, done.returncode, "report", "AWS refused", "ExecutionDoesNotExist"
    )
    done = _cli(["aws", "teardown", "--stack", "absent", "--yes"], env, ROOT)
    _assert_one_user_error_line(done.stderr, done.returncode, "aws teardown", "absent")


BUG = (
    "import sys, stepsage.sample as s\n"
    "def broken(*a, **k): raise RuntimeError('a bug\\nover two lines')\n"
    "s.build_sample_dataset = broken\n"
    "from stepsage.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_is_one_line_exit_1_and_debug_shows_the_traceback(
    debug: bool, env: dict[str, str], tmp_path: Path
) -> None:
    args = ["sample", "--out", str(tmp_path / "s"), *(["--debug"] if debug else [])]
    done = subprocess.run(
        [sys.executable, "-c", BUG, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("stepsage sample: internal error, a bug in stepsage (RuntimeError: a bug over two")
    if debug:
        assert "Traceback" in done.stderr and "broken" in done.stderr
    else:
        assert done.stderr.strip() == last and last.endswith("run with --debug for the traceback")


# ------------------------------------------------------------------------ generated, through main()


def _typos(name: str) -> set[str]:
    out = {name.lower(), name.upper(), name[:-1], name + "s", name[1:], name.replace("e", "", 1)}
    for i in range(len(name) - 1):
        out.add(name[:i] + name[i + 1] + name[i] + name[i + 2 :])
    return {t for t in out if t and t not in PARAMETERS}


def _bad_arns() -> list[str]:
    parts = ["arn", "aws", "states", "us-east-1", "123456789012", "execution", "my-machine", "run-1"]
    bad = {
        "",
        " ",
        GOOD_ARN + " ",
        " " + GOOD_ARN,
        GOOD_ARN + "\n",
        GOOD_ARN + ":extra",
        GOOD_ARN.replace("execution", "stateMachine"),
        GOOD_ARN.replace(":execution:", ":express:"),
        GOOD_ARN.rsplit(":", 1)[0],
        GOOD_ARN.rsplit(":", 1)[0] + ":",
        "run-1",
        "https://console.aws.amazon.com/states/home#/executions/details/" + GOOD_ARN,
        GOOD_ARN.replace("run-1", "r" * 81),
        GOOD_ARN.replace("run-1", "run 1"),
        GOOD_ARN.replace("run-1", "run*1"),
        GOOD_ARN.replace("run-1", "run\x001"),
        GOOD_ARN.replace("run-1", "run/1"),
    }
    # Each field in turn replaced by something of the wrong shape.
    wrong = {
        0: ["urn", "ARN", ""],
        1: ["", "amazon", "AWS"],
        2: ["sagemaker", "lambda", "", "State"],
        3: ["", "US-EAST-1", "useast1", "us-east", "us_east_1"],
        4: ["", "12345678901", "1234567890123", "12345678901a", "\uff11" * 12],
        5: ["", "executions", "Execution"],
        6: ["", "a" * 81, "with space", "semi;colon"],
        7: ["", "a" * 81, "tab\there", "brace{", "pipe|"],
    }
    for index, values in wrong.items():
        for value in values:
            bad.add(":".join([*parts[:index], value, *parts[index + 1 :]]))
    for _ in range(60):
        bad.add("".join(RNG.choice(string.printable) for _ in range(RNG.randint(1, 90))))
    return sorted(bad)


def test_generated_unknown_parameters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = sorted({typo: name for name in PARAMETERS for typo in _typos(name)}.items())
    assert len(cases) > 500
    for typo, name in cases:
        code, err = _in_process(["local", "up", "--parameter", f"{typo}=x"], capsys)
        line = _assert_one_user_error_line(err, code, "local up", "unknown parameter")
        assert name in line, (typo, line)
    assert not (tmp_path / "state").exists()


def _outside(spec: dict) -> list[str]:
    bad = ["", "\n", "a" * 300]
    if "AllowedValues" in spec:
        bad += [str(v).upper() + "X" for v in spec["AllowedValues"]] + [f" {spec['AllowedValues'][0]}"]
    if spec.get("Type") == "Number":
        bad += ["x", "1e3", "nan", "-inf", "0x10", "1,000"]
        bad += [str(float(spec["MinValue"]) - 1)] if "MinValue" in spec else []
        bad += [str(float(spec["MaxValue"]) + 1)] if "MaxValue" in spec else []
    return bad


def test_generated_values_outside_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    count = 0
    for name, spec in sorted(PARAMETERS.items()):
        if not {"AllowedValues", "AllowedPattern", "MinValue", "MaxValue", "MaxLength"} & set(spec):
            continue
        for value in [v for v in _outside(spec) if v != str(spec.get("Default"))]:
            code, err = _in_process(["local", "up", "--parameter", f"{name}={value}"], capsys)
            _assert_one_user_error_line(err, code, "local up", f"parameter {name}")
            count += 1
    assert count > 100


def test_generated_malformed_arns(capsys: pytest.CaptureFixture[str]) -> None:
    cases = _bad_arns()
    assert len(cases) > 80
    for arn in cases:
        code, err = _in_process(["report", "--", arn] if arn.startswith("-") else ["report", arn], capsys)
        _assert_one_user_error_line(err, code, "report", "EXECUTION_ARN")


def test_well_formed_arns_pass_the_shape_check() -> None:
    from stepsage.arguments import execution_arn

    for region in ("us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1"):
        for name in ("a", "r" * 80, "digits-1c0f6a2d9b3e", "Run_2026.11.01", "übung"):
            arn = f"arn:aws:states:{region}:123456789012:execution:sm_1:{name}"
            assert execution_arn(arn) == arn
    assert execution_arn(GOOD_ARN.replace("arn:aws:", "arn:aws-cn:")).startswith("arn:aws-cn:")


def test_generated_missing_dataset_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty.zip").write_bytes(b"")
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 not really")
    names = ["missing.zip", "missing", "a/b/c.zip", "sp ace.zip", "ünï.zip", "empty.zip", "fake.zip", "-"]
    for name in names:
        path = tmp_path / name
        code, err = _in_process(["local", "run", "--", str(path)], capsys)
        _assert_one_user_error_line(err, code, "local run", str(path))
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["local", "up", "--port", "-1"],
        ["local", "up", "--url-port", "65536"],
        ["local", "up", "--time-scale", "0"],
        ["local", "up", "--time-scale", "nan"],
        ["local", "run", "x.zip", "--timeout", "-5"],
        ["report", GOOD_ARN, "--samples", "-1"],
        ["sample", "--out", "x", "--size", "abc"],
        ["train-local"],
        ["aws", "teardown", "--stack", "has_underscore"],
        ["aws"],
        ["local"],
        [],
    ],
)
def test_argparse_errors_are_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _in_process(args, capsys)
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stepsage") and "--help" in lines[0], err
