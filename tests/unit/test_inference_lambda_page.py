"""The inference Lambda's page (page.html and its CSP) and its choice of endpoint per dataset, without AWS."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from events_fixture import LAMBDAS_DIR, ROOT, load_lambda_module

pytestmark = pytest.mark.unit

image_request = load_lambda_module("inference", "image_request")
inference_page = load_lambda_module("inference", "inference_page")
from stepsage_lambda import naming  # noqa: E402 - importable once the loader has put the layer on the path

PAGE_HTML = (LAMBDAS_DIR / "inference" / "page.html").read_text(encoding="utf-8")


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# ---- endpoint per dataset --------------------------------------------------------------------------


STACK = "stepsage-test"


@pytest.mark.parametrize("dataset", ["dogImages", "digits", "a", "x" * 49])
def test_a_dataset_maps_to_the_deploy_steps_endpoint_name(dataset: str) -> None:
    assert image_request.dataset_endpoint_name(STACK, dataset) == naming.endpoint_name(STACK, dataset)
    assert image_request.dataset_endpoint_name(STACK, dataset) == f"{STACK}-{dataset}"


@pytest.mark.parametrize("dataset", ["dog_breeds", "v1.2", "x" * 100, "cats-v2"])
def test_names_outside_sagemakers_alphabet_map_as_the_deploy_step_maps_them(dataset: str) -> None:
    name = image_request.dataset_endpoint_name(STACK, dataset)
    assert name == naming.endpoint_name(STACK, dataset)
    assert naming.SAGEMAKER_NAME.match(name) and len(name) <= naming.ENDPOINT_NAME_MAX


def test_the_same_dataset_maps_to_each_stacks_own_endpoint() -> None:
    names = {image_request.dataset_endpoint_name(stack, "dogImages") for stack in ("a", "b", "a-b", STACK)}
    assert len(names) == 4


@pytest.mark.parametrize(
    "dataset",
    ["", "-dogs", ".hidden", "dogs%20big", "dog breeds", "a/b", "..", "dogs?x=1", "x" * 101, "caf\u00e9"],
)
def test_other_path_segments_are_refused_with_the_rule(dataset: str) -> None:
    with pytest.raises(image_request.InvalidDataset) as caught:
        image_request.dataset_endpoint_name(STACK, dataset)
    assert caught.value.status_code == 400
    assert "letters, digits" in caught.value.message


def test_the_default_endpoint_comes_from_the_environment() -> None:
    settings = image_request.InferenceSettings.from_env(
        {"STACK_NAME": STACK, "SERVED_DATASET": " dogImages "}
    )
    assert image_request.default_endpoint_name(settings.stack_name, settings.served_dataset) == (
        f"{STACK}-dogImages"
    )
    for unset in ({}, {"SERVED_DATASET": ""}, {"SERVED_DATASET": "  "}):
        settings = image_request.InferenceSettings.from_env({"STACK_NAME": STACK, **unset})
        with pytest.raises(image_request.EndpointNotFound) as caught:
            image_request.default_endpoint_name(settings.stack_name, settings.served_dataset)
        assert caught.value.status_code == 404
        assert "POST /<dataset>" in caught.value.message and "SERVED_DATASET" in caught.value.message
    with pytest.raises(image_request.InvalidDataset):
        image_request.default_endpoint_name(STACK, "not a dataset")


# ---- the page and its Content-Security-Policy --------------------------------------------------------


def test_the_policy_admits_exactly_the_pages_inline_script_and_style() -> None:
    page = inference_page.load_page()
    policy = _directives(page.headers["Content-Security-Policy"])
    (script,) = re.findall(r"<script>(.*?)</script>", PAGE_HTML, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", PAGE_HTML, re.S)
    assert policy["script-src"] == [_sha256(script)]
    assert policy["style-src"] == [_sha256(style)]
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.html == PAGE_HTML


def test_the_page_is_self_contained() -> None:
    # No external asset: every URL in the markup is a data: URL (the favicon) or the SVG namespace.
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", PAGE_HTML)
    assert all(url.startswith("data:") for url in urls), urls
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", PAGE_HTML)
    assert "innerHTML" not in PAGE_HTML  # the policy requires Trusted Types for script sinks


def test_the_page_posts_to_its_own_path_with_the_files_content_type() -> None:
    assert "fetch(apiPath" in PAGE_HTML
    assert "const apiPath = location.pathname" in PAGE_HTML
    assert '"Content-Type": chosen.file.type' in PAGE_HTML


@pytest.mark.parametrize(
    ("html", "complaint"),
    [
        ("<style>a{}</style><script src='x.js'></script>", "bare inline <script>"),
        ("<style>a{}</style><script nonce='n'>1</script>", "bare inline <script>"),
        ("<script>1</script>", "no inline <style>"),
        ("<style>a{}</style>", "no inline <script>"),
        ("<style>a{}</style><script>1</script><button onclick='go()'>", "inline event handlers"),
        ("<style>a{}</style><script>1</script><div style='color:red'>", "style attributes"),
    ],
)
def test_pages_the_policy_could_not_cover_are_refused(html: str, complaint: str) -> None:
    with pytest.raises(inference_page.PageError, match=complaint):
        inference_page.content_security_policy(html)


def test_code_inside_the_script_is_not_mistaken_for_markup() -> None:
    html = "<style>a{}</style><script>if (a < b) { img.onload = () => 1; el.style.width = '1%'; }</script>"
    assert "script-src 'sha256-" in inference_page.content_security_policy(html)


def test_the_build_ships_the_page_beside_the_handler(tmp_path: Path) -> None:
    """SAM's makefile build (lambdas/inference/Makefile), with pip stubbed out: only the copy step runs."""
    subprocess.run(
        [
            "make",
            "-s",
            "-f",
            str(LAMBDAS_DIR / "inference" / "Makefile"),
            "build-InferenceFunction",
            f"ARTIFACTS_DIR={tmp_path}",
            "PIP=true",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == PAGE_HTML
    assert {"app.py", "inference_page.py", "image_request.py", "endpoint_runtime.py"} <= {
        path.name for path in tmp_path.iterdir()
    }
    assert not (tmp_path / "Makefile").exists()
