"""The local endpoint container: a real HTTP model server subprocess over a model artifact's inference.py."""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_artifact import DEFAULT_LABELS, REPO_ROOT, build_model_artifact, image_bytes, png_bomb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_REQUEST_BYTES = 300_000
SERVER = (sys.executable, "-m", "stepsage.local.sagemaker.model_server")


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    port: int

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> tuple[int, dict]:
        return self.request("POST", "/invocations", body, {"Content-Type": content_type, "Accept": accept})

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_server(model_dir: Path, *extra: str, env: dict[str, str] | None = None) -> RunningServer:
    """Start the server on a free port and wait for its one-line JSON ready message."""
    # A file, not a pipe: nobody drains a pipe while tests run, and a full one would block the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server process
    process = subprocess.Popen(
        [
            *SERVER,
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            "1",
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "STEPSAGE_PRECISION": "fp32", **(env or {})},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 90)
    if not ready:
        process.kill()
        pytest.fail("the model server did not report ready within 90 s")
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        log.seek(0)
        pytest.fail(f"the model server exited ({process.returncode}) before ready: {log.read().decode()}")
    announced = json.loads(line)
    assert announced["pid"] == process.pid
    return RunningServer(process, announced["port"])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_artifact(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[RunningServer]:
    running = start_server(artifact, "--max-request-bytes", str(MAX_REQUEST_BYTES))
    yield running
    assert running.stop() == 0


def fake_model_dir(tmp_path: Path, source: str) -> Path:
    """A model dir whose code/inference.py is `source`: tests the server without loading torch."""
    code = tmp_path / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(textwrap.dedent(source))
    return tmp_path


SLOW_ECHO = """
    import time

    class ClientError(Exception):
        status_code = 422

    def model_fn(model_dir):
        time.sleep(float({load_seconds}))
        return "model"

    def input_fn(body, content_type):
        if body == b"client-error":
            raise ClientError("refused on purpose")
        if body == b"crash":
            raise RuntimeError("boom")
        return body

    def predict_fn(data, model):
        if data.startswith(b"sleep"):
            time.sleep(float(data[5:]))
        return {{"echo": data.decode(), "model": model}}

    def output_fn(prediction, accept):
        import json
        return json.dumps(prediction)
"""


# ---- the real model ----------------------------------------------------------------------------------


def test_ping_is_200_once_loaded(server: RunningServer) -> None:
    assert server.request("GET", "/ping") == (200, {"status": "Healthy"})


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "application/x-image")]
)
def test_invoke_with_raw_images(server: RunningServer, fmt: str, content_type: str) -> None:
    status, document = server.invoke(image_bytes(fmt), content_type)
    assert status == 200
    labels = [p["label"] for p in document["predictions"]]
    assert sorted(labels) == sorted(DEFAULT_LABELS)
    assert document["model"]["architecture"] == "resnet18"
    assert document["model"]["serving"]["mode"] == "fp32"
    scores = [p["score"] for p in document["predictions"]]
    assert scores == sorted(scores, reverse=True)


def test_invoke_with_json_matches_raw_bytes(server: RunningServer) -> None:
    data = image_bytes("PNG", seed=4)
    _, raw = server.invoke(data, "image/png")
    body = json.dumps({"image": base64.b64encode(data).decode(), "top_k": 2}).encode()
    status, document = server.invoke(body, "application/json")
    assert status == 200
    assert document["predictions"] == raw["predictions"][:2]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message_part"),
    [
        (image_bytes(), {"Content-Type": "text/plain"}, 415, "not supported"),
        (b"", {"Content-Type": "image/jpeg"}, 400, "empty"),
        (b"not an image at all", {"Content-Type": "image/jpeg"}, 400, "cannot decode"),
        (png_bomb(9000, 9000), {"Content-Type": "image/png"}, 400, "9000x9000"),
        (json.dumps({"image": "%%%"}).encode(), {"Content-Type": "application/json"}, 400, "base64"),
        (
            json.dumps({"image": base64.b64encode(image_bytes()).decode(), "top_k": 0}).encode(),
            {"Content-Type": "application/json"},
            400,
            "top_k",
        ),
        (image_bytes(), {"Content-Type": "image/jpeg", "Accept": "text/csv"}, 406, "accept"),
        (b"x" * (MAX_REQUEST_BYTES + 1), {"Content-Type": "image/jpeg"}, 413, "limit"),
    ],
)
def test_bad_requests_get_their_4xx_with_a_message(
    server: RunningServer, body: bytes, headers: dict[str, str], status: int, message_part: str
) -> None:
    got_status, document = server.request("POST", "/invocations", body, headers)
    assert got_status == status
    assert message_part in document["message"]


def test_unknown_routes_are_404(server: RunningServer) -> None:
    assert server.request("GET", "/nothing")[0] == 404
    assert server.request("POST", "/predict", b"x", {"Content-Type": "image/jpeg"})[0] == 404


def test_missing_content_length_is_411(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        raw.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\r\n")
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 411")


def test_concurrent_requests_all_answer_the_same(server: RunningServer) -> None:
    data = image_bytes("JPEG", seed=9)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: server.invoke(data, "image/jpeg"), range(12)))
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(document["predictions"]) for _, document in answers}) == 1


def test_keep_alive_connection_serves_several_requests(server: RunningServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        for fmt in ("JPEG", "PNG"):
            connection.request(
                "POST", "/invocations", image_bytes(fmt), {"Content-Type": "image/" + fmt.lower()}
            )
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Connection") != "close"
            assert len(json.loads(response.read())["predictions"]) == 3
    finally:
        connection.close()


# ---- server behaviour, on fake handlers ------------------------------------------------------------


def test_model_errors_are_500_and_typed_errors_keep_their_status(tmp_path: Path) -> None:
    running = start_server(fake_model_dir(tmp_path, SLOW_ECHO.format(load_seconds=0)))
    try:
        assert running.invoke(b"hello", "text/plain") == (200, {"echo": "hello", "model": "model"})
        status, document = running.invoke(b"crash", "text/plain")
        assert status == 500
        assert "RuntimeError: boom" in document["message"]
        assert running.invoke(b"client-error", "text/plain") == (422, {"message": "refused on purpose"})
    finally:
        assert running.stop() == 0


def test_ping_is_503_while_the_model_loads(tmp_path: Path) -> None:
    model_dir = fake_model_dir(tmp_path, SLOW_ECHO.format(load_seconds=3))
    process = subprocess.Popen(
        [*SERVER, "--model-dir", str(model_dir), "--port", "0", "--threads", "1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # The ready line only comes after loading, so find the port from the listening socket instead.
        port = _wait_for_listening_port(process.pid)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/ping")
        assert connection.getresponse().status == 503
        connection.close()
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["port"] == port
        running = RunningServer(process, port)
        assert running.request("GET", "/ping")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def _wait_for_listening_port(pid: int, timeout: float = 30) -> int:
    inodes_deadline = time.monotonic() + timeout
    while time.monotonic() < inodes_deadline:
        sockets = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                return int(fields[1].split(":")[1], 16)
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never listened")


def test_missing_inference_module_exits_non_zero(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*SERVER, "--model-dir", str(tmp_path), "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "inference.py does not exist" in completed.stderr


def test_handlers_missing_is_a_clear_load_error(tmp_path: Path) -> None:
    model_dir = fake_model_dir(tmp_path, "def model_fn(model_dir):\n    return 1\n")
    completed = subprocess.run(
        [*SERVER, "--model-dir", str(model_dir), "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "does not define input_fn, predict_fn, output_fn" in completed.stderr


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    running = start_server(fake_model_dir(tmp_path, SLOW_ECHO.format(load_seconds=0)))
    answers: list[tuple[int, dict]] = []
    request = threading.Thread(target=lambda: answers.append(running.invoke(b"sleep1.5", "text/plain")))
    request.start()
    time.sleep(0.5)
    running.process.send_signal(signal.SIGTERM)
    request.join(timeout=30)
    assert answers == [(200, {"echo": "sleep1.5", "model": "model"})]
    assert running.process.wait(timeout=30) == 0


def test_sigterm_is_not_held_up_by_idle_keep_alive_connections(tmp_path: Path) -> None:
    running = start_server(fake_model_dir(tmp_path, SLOW_ECHO.format(load_seconds=0)))
    idle = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
    idle.request("GET", "/ping")
    assert idle.getresponse().read()
    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0
    assert time.monotonic() - started < 10  # the handler timeout is 120 s: this proves the hang-up
    idle.close()
