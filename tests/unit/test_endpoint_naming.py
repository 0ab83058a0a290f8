"""Endpoint names per stack and dataset: valid, within 63, distinct across stacks, the dataset kept."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from events_fixture import load_lambda_module

from contracts import datasets

pytestmark = pytest.mark.unit

load_lambda_module("deploy", "deployer")  # puts the layer on the path
from stepsage_lambda import naming  # noqa: E402

# CloudFormation's stack name rule: a letter, then letters, digits and hyphens, 128 at most.
STACK_ALPHABET = string.ascii_letters + string.digits + "-"
DATASET_ALPHABET = string.ascii_letters + string.digits + "._-"
PLAIN_BUDGET = naming.ENDPOINT_NAME_MAX


def _stack_names(rng: random.Random, count: int) -> list[str]:
    fixed = [
        "s",
        "stepsage",
        "stepsage-local",
        "stepsage-prod",
        "a-",
        "a--b",
        "Prod-2",
        "x" * 128,
        "a" + "-" * 127,
        "stepsage-" + "p" * 100,
    ]
    generated = [
        rng.choice(string.ascii_letters)
        + "".join(rng.choice(STACK_ALPHABET) for _ in range(rng.randrange(128)))
        for _ in range(count)
    ]
    return fixed + generated


def _dataset_names(rng: random.Random, count: int) -> list[str]:
    fixed = [
        "a",
        "dogImages",
        "digits",
        "tiny",
        "cats-v2",
        "dog_breeds",
        "v1.2",
        "a-b",
        "b-c",
        "c",
        "deadbeef",
        "DEADBEEF",
        "0123abcd",
        "x" * 54,
        "x" * 55,
        "x" * 100,
        "a..b",
        "a__b",
        "9-",
        "Z9.",
        "a" + "-" * 99,
        "a" + "." * 99,
    ]
    generated = [
        rng.choice(string.ascii_letters + string.digits)
        + "".join(rng.choice(DATASET_ALPHABET) for _ in range(rng.randrange(100)))
        for _ in range(count)
    ]
    return fixed + generated


RNG = random.Random(20261129)
STACKS = _stack_names(RNG, 60)
DATASETS = _dataset_names(RNG, 150)
PAIRS = list(itertools.product(STACKS, DATASETS))


def test_the_generated_inputs_are_what_each_side_accepts() -> None:
    assert len(PAIRS) >= 10_000
    assert all(datasets.is_valid_name(d) for d in DATASETS)
    assert all(s[0].isalpha() and len(s) <= 128 and set(s) <= set(STACK_ALPHABET) for s in STACKS)


def test_every_name_is_one_sagemaker_takes() -> None:
    for stack, dataset in PAIRS:
        name = naming.endpoint_name(stack, dataset)
        assert len(name) <= naming.ENDPOINT_NAME_MAX and naming.SAGEMAKER_NAME.match(name), (stack, dataset)
        assert naming.endpoint_name(stack, dataset) == name  # deterministic


def test_distinct_pairs_never_share_an_endpoint() -> None:
    names: dict[str, tuple[str, str]] = {}
    for pair in PAIRS:
        name = naming.endpoint_name(*pair)
        assert names.setdefault(name, pair) == pair, f"{pair} and {names[name]} both get {name}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "b-c"), ("a-b", "c")),  # the hyphen that joins them could split either way
        (("stepsage", "prod-dogs"), ("stepsage-prod", "dogs")),
        (("a", "deadbeef"), ("a-deadbeef", "x")),  # a dataset that looks like the hash suffix
        (("s", "x" * 100), ("s", "x" * 99)),  # both cut to the same readable part
        (("p" * 120, "d"), ("p" * 121, "d")),
    ],
)
def test_pairs_built_to_collide_do_not(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert naming.endpoint_name(*first) != naming.endpoint_name(*second)


@pytest.mark.parametrize(
    ("stack", "dataset", "endpoint"),
    [
        ("stepsage", "digits", "stepsage-digits"),
        ("stepsage", "dogImages", "stepsage-dogImages"),
        ("stepsage-local", "tiny", "stepsage-local-tiny"),
        ("prod-2", "Z9", "prod-2-Z9"),
    ],
)
def test_a_plain_dataset_name_gives_stack_dash_dataset(stack: str, dataset: str, endpoint: str) -> None:
    assert naming.endpoint_name(stack, dataset) == endpoint


def test_the_dataset_name_is_kept_whole_wherever_it_fits() -> None:
    room = naming.ENDPOINT_NAME_MAX - 9  # "-<8 hex>"
    for stack, dataset in PAIRS:
        name = naming.endpoint_name(stack, dataset)
        if naming.SAGEMAKER_NAME.match(dataset) and len(dataset) <= room:
            assert f"-{dataset}" in f"-{name}", (stack, dataset, name)
        if len(stack) + len(dataset) + 1 <= room and naming.SAGEMAKER_NAME.match(f"{stack}-{dataset}"):
            # A hashed name drops only a trailing hyphen of the stack's.
            assert name.startswith(f"{stack.rstrip('-')}-"), (stack, dataset, name)


def test_tags_mark_the_stack_and_the_dataset() -> None:
    tags = {t["Key"]: t["Value"] for t in naming.stack_tags("stepsage-prod", "dog_breeds", "run-1")}
    assert tags[naming.STACK_TAG] == "stepsage-prod" and tags[naming.DATASET_TAG] == "dog_breeds"


def test_any_text_still_gives_a_name_sagemaker_takes() -> None:
    """The deploy step only sees valid dataset names, but the naming holds for any text: trailing newlines
    (which a `$`-anchored pattern lets through), unicode, control characters, empty strings."""
    rng = random.Random(7)
    alphabet = string.printable + "\u00e9\u4e2d\U0001f600\x00"
    texts = [
        "",
        "\n",
        "a\n",
        "a\r\n",
        "-",
        "\u00e9",
        "a b",
        *("".join(rng.choice(alphabet) for _ in range(rng.randrange(130))) for _ in range(300)),
    ]
    names = {}
    for stack, dataset in itertools.product(["stepsage", "a\n", ""], texts):
        name = naming.endpoint_name(stack, dataset)
        assert len(name) <= naming.ENDPOINT_NAME_MAX and naming.SAGEMAKER_NAME.match(name), (stack, dataset)
        assert names.setdefault(name, (stack, dataset)) == (stack, dataset)
    assert not naming.SAGEMAKER_NAME.match("stepsage-a\n")
    assert not datasets.is_valid_name("a\n")
