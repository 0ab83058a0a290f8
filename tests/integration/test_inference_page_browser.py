"""The inference page in headless chromium: Function URL -> Lambda -> SageMaker Runtime -> model server."""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lambda_harness import FakeLambdaContext, load_lambda_module
from model_artifact import REPO_ROOT, build_model_artifact, image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent: `make browser` (part of `make setup`) installs Debian's chromium",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from stepsage.local.function_url import FunctionUrlServer  # noqa: E402
from stepsage.local.gateway import Gateway, GatewayServer, moto_wsgi_app  # noqa: E402
from stepsage.local.sagemaker.exceptions import ModelError, RuntimeValidationError  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABELS = (
    "001.Affenpinscher",
    "002.Afghan_hound",
    "003.Airedale_terrier",
    "004.Akita",
    "005.Alaskan_malamute",
    "006.American_eskimo_dog",
)
STACK_NAME, SERVED_DATASET = "stepsage", "dogImages"
DEFAULT_ENDPOINT = "stepsage-dogImages"  # the deploy step's <stack>-<dataset> for the served dataset
SERVED_ENDPOINTS = (DEFAULT_ENDPOINT, "stepsage-digits")
WAIT_MS = 20_000
SERVER = (sys.executable, "-m", "stepsage.local.sagemaker.model_server")


class LoopbackRuntime:
    """SageMaker Runtime for the gateway: the served endpoints answer from one local model server, as the
    emulator's endpoints do; any other name is SageMaker's not-found ValidationError."""

    def __init__(self, port: int, endpoints: tuple[str, ...]) -> None:
        self.port = port
        self.endpoints = endpoints
        self.calls: list[str] = []

    def invoke_endpoint(
        self, endpoint_name: str, body: bytes, content_type: str, accept: str
    ) -> tuple[int, bytes, str]:
        self.calls.append(endpoint_name)
        if endpoint_name not in self.endpoints:
            raise RuntimeValidationError(f"Endpoint {endpoint_name} of account 123456789012 not found.")
        status, payload = invoke_model_server(self.port, body, content_type, accept)
        if status >= 400:
            original = payload.decode("utf-8", errors="replace")
            raise ModelError(
                f'Received client error ({status}) from primary with message "{original}".',
                status,
                original,
                f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{endpoint_name}",
            )
        return status, payload, "application/json"


def invoke_model_server(
    port: int, body: bytes, content_type: str, accept: str = "application/json"
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST", "/invocations", body=body, headers={"Content-Type": content_type, "Accept": accept}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Stack:
    url: str
    model_port: int
    runtime: LoopbackRuntime
    events: list[dict[str, Any]]  # what the Function URL handed the Lambda, in order


@dataclass
class PageProblems:
    """What the browser reports that a working page never causes: CSP refusals and uncaught errors."""

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "Trusted Type" in text):
            self.messages.append(text)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    model_dir = build_model_artifact(tmp_path_factory.mktemp("model"), labels=LABELS, image_size=32)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: nobody drains a pipe during tests
    process = subprocess.Popen(
        [*SERVER, "--model-dir", str(model_dir), "--port", "0", "--threads", "1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "STEPSAGE_PRECISION": "fp32"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 90)
        line = process.stdout.readline() if ready else ""
        if not line:
            log.seek(0)
            pytest.fail(f"the model server did not get ready: {log.read().decode(errors='replace')[-2000:]}")
        yield int(json.loads(line)["port"])
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def stack(model_server: int) -> Iterator[Stack]:
    """The Lambda in-process behind a local Function URL; its boto3 calls go to the local gateway."""
    runtime = LoopbackRuntime(model_server, SERVED_ENDPOINTS)
    gateway = GatewayServer(Gateway(moto_wsgi_app(), {}, runtime=runtime), port=0).start()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "STACK_NAME": STACK_NAME,
            "SERVED_DATASET": SERVED_DATASET,
            "AWS_ENDPOINT_URL": gateway.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", raising=False)
        env.delenv("MAX_PAYLOAD_BYTES", raising=False)
        app = load_lambda_module("inference", "app")
        from stepsage_lambda import clients

        clients.client.cache_clear()  # another test may have cached a client for other endpoints
        events: list[dict[str, Any]] = []

        def invoke(event: dict[str, Any]) -> Any:
            events.append(event)
            return app.lambda_handler(event, FakeLambdaContext())

        function_url = FunctionUrlServer(invoke).start()
        try:
            yield Stack(function_url.url, model_server, runtime, events)
        finally:
            function_url.stop()
            gateway.stop()
            clients.client.cache_clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, PageProblems]]:
    # Reduced motion switches the bars' transition off, so their widths are final once set.
    context = browser.new_context(
        viewport={"width": 1000, "height": 820}, device_scale_factor=1, reduced_motion="reduce"
    )
    opened = context.new_page()
    problems = PageProblems()
    problems.watch(opened)
    yield opened, problems
    context.close()
    assert problems.messages == []


def _image_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _shown_predictions(page: Page) -> list[dict[str, Any]]:
    """Each row's label and score as the page holds them, its visible text, and its bar's geometry."""
    shown: list[dict[str, Any]] = page.eval_on_selector_all(
        "#predictions > li",
        """items => items.map(item => {
            const track = item.querySelector('.track').getBoundingClientRect();
            const fill = item.querySelector('.fill').getBoundingClientRect();
            return {label: item.dataset.label, score: Number(item.dataset.score),
                    name: item.querySelector('.name').textContent,
                    percent: item.querySelector('.score').textContent,
                    trackWidth: track.width, fillWidth: fill.width};
        })""",
    )
    return shown


def _wait_for_bars(page: Page, count: int) -> None:
    expect(page.locator("#predictions > li")).to_have_count(count, timeout=WAIT_MS)
    # Widths are set one animation frame after the rows appear.
    page.wait_for_function(
        "n => [...document.querySelectorAll('#predictions .fill')].filter(f => f.style.width).length === n",
        arg=count,
        timeout=WAIT_MS,
    )


def test_upload_shows_the_endpoints_top_labels_with_bars_sized_by_score(
    stack: Stack, page: tuple[Page, PageProblems], tmp_path: Path
) -> None:
    browser_page, _ = page
    response = browser_page.goto(stack.url + "dogImages")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    expect(browser_page.locator("#target")).to_have_text("dataset · dogImages")

    photo = image_bytes("JPEG", (96, 72), seed=3)
    status, truth = invoke_model_server(stack.model_port, photo, "image/jpeg")
    assert status == 200
    expected = json.loads(truth)["predictions"]
    assert len(expected) == 5  # the endpoint's default top-k, which the page's selector starts at

    calls_before = len(stack.runtime.calls)
    browser_page.set_input_files("#file", _image_file(tmp_path, "dog.jpg", photo))
    _wait_for_bars(browser_page, 5)
    shown = _shown_predictions(browser_page)

    assert [row["label"] for row in shown] == [p["label"] for p in expected]
    assert [row["score"] for row in shown] == pytest.approx([p["score"] for p in expected], abs=1e-9)
    assert stack.runtime.calls[calls_before:] == ["stepsage-dogImages"]  # POST /dogImages: its endpoint
    for row in shown:
        # "001.Affenpinscher" reads as "Affenpinscher #001"; the score as a percentage.
        number, _, name = row["label"].partition(".")
        assert row["name"] == f"{name.replace('_', ' ')}#{number}"
        assert row["percent"] == f"{row['score'] * 100:.1f}%"
        assert row["trackWidth"] > 200
        assert row["fillWidth"] == pytest.approx(row["score"] * row["trackWidth"], abs=1.0)
    assert browser_page.locator("#preview").evaluate("img => img.naturalWidth") == 96
    expect(browser_page.locator("#file-info")).to_contain_text("96\u00d772")
    expect(browser_page.locator("#model")).to_contain_text("resnet18 · 6 classes · fp32")
    expect(browser_page.locator("#error")).to_be_hidden()

    screenshot = tmp_path / "inference-page.png"
    browser_page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_the_top_k_selector_asks_the_api_again_on_the_pages_own_path(
    stack: Stack, page: tuple[Page, PageProblems], tmp_path: Path
) -> None:
    browser_page, _ = page
    browser_page.goto(stack.url)
    expect(browser_page.locator("#target")).to_have_text("default endpoint")
    photo = image_bytes("PNG", (40, 40), seed=5)
    browser_page.set_input_files("#file", _image_file(tmp_path, "pup.png", photo))
    _wait_for_bars(browser_page, 5)

    with browser_page.expect_request(lambda request: request.method == "POST") as sent:
        browser_page.select_option("#topk", "3")
    assert sent.value.url == stack.url + "?top_k=3"
    _wait_for_bars(browser_page, 3)
    # What arrived is what a script sends: the file's own bytes with its content type.
    arrived = stack.events[-1]
    assert (arrived["requestContext"]["http"]["method"], arrived["rawPath"]) == ("POST", "/")
    assert arrived["queryStringParameters"] == {"top_k": "3"}
    assert arrived["headers"]["content-type"] == "image/png"
    assert base64.b64decode(arrived["body"]) == photo

    # Above the endpoint's default of 5 the Lambda forwards JSON; all six classes come back.
    browser_page.select_option("#topk", "10")
    _wait_for_bars(browser_page, len(LABELS))
    shown = _shown_predictions(browser_page)
    assert sorted(row["label"] for row in shown) == sorted(LABELS)
    assert sum(row["score"] for row in shown) == pytest.approx(1.0, abs=1e-4)
    assert stack.runtime.calls[-1] == DEFAULT_ENDPOINT


def _api_error(url: str, body: bytes, content_type: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    document: dict[str, Any] = json.loads(caught.value.read())
    return {"status": caught.value.code, **document}


@pytest.mark.parametrize(
    ("path", "file_name", "data", "content_type", "status", "error"),
    [
        (
            "dogImages",
            "notes.txt",
            b"just some words, not a picture",
            "text/plain",
            415,
            "UnsupportedMediaType",
        ),
        ("dogImages", "fake.jpg", b"words pretending to be a jpeg", "image/jpeg", 400, "UndecodableImage"),
        # A sound header over a body cut short: the Lambda lets it through, the model server refuses it.
        ("dogImages", "cut.jpg", image_bytes("JPEG", (64, 64), seed=2)[:400], "image/jpeg", 400, None),
        (
            "nosuchset",
            "dog.jpg",
            image_bytes("JPEG", (32, 32), seed=4),
            "image/jpeg",
            404,
            "EndpointNotFound",
        ),
    ],
)
def test_the_apis_refusal_is_shown_with_its_message(
    stack: Stack,
    page: tuple[Page, PageProblems],
    tmp_path: Path,
    path: str,
    file_name: str,
    data: bytes,
    content_type: str,
    status: int,
    error: str | None,
) -> None:
    api = _api_error(stack.url + path, data, content_type)
    assert api["status"] == status
    if error:
        assert api["error"] == error

    browser_page, _ = page
    browser_page.goto(stack.url + path)
    browser_page.set_input_files("#file", _image_file(tmp_path, file_name, data))
    alert = browser_page.locator("#error")
    expect(alert).to_be_visible(timeout=WAIT_MS)
    expect(browser_page.locator("#error-title")).to_have_text(f"{status} · {api['error']}")
    expect(browser_page.locator("#error-message")).to_have_text(api["message"])
    expect(browser_page.locator("#predictions > li")).to_have_count(0)
    if path == "nosuchset":
        assert "stepsage-nosuchset" in api["message"]
    if file_name == "notes.txt":
        assert "Content-Type" in api["message"]
        expect(browser_page.locator("#no-preview")).to_be_visible()
        browser_page.screenshot(path=str(tmp_path / "inference-page-error.png"), full_page=True)
