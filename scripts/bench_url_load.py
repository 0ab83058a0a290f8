"""Load the inference URL with good and hostile requests at once; print answers by status and peak memory.

    .venv/bin/python scripts/bench_url_load.py [--requests 200] [--concurrency 200]
    .venv/bin/python scripts/bench_url_load.py --url http://127.0.0.1:PORT/DATASET --pid PID

Without --url it serves its own stack: the local Function URL (stepsage.local.function_url) running the real
inference Lambda handler in this process, in front of a real model server subprocess over a seeded, untrained
resnet18 artifact (the handler's one SageMaker Runtime call goes straight to the server's /invocations, as
InvokeEndpoint would carry it, so a container 4xx comes back as the same 4xx). With --url it loads any local
URL (`stepsage local up`) and, given --pid, samples that process tree's memory.

Goal (issue 9): no 5xx and no request left unanswered; every good request answered 200; every hostile one a
4xx. Exits non-zero when the goal is missed.
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

warnings.filterwarnings("ignore", message="No application metrics to publish")

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = [f"class_{i}" for i in range(10)]
ERRORS: collections.Counter[str] = collections.Counter()  # why requests went unanswered, by exception


@dataclass(frozen=True)
class Case:
    name: str
    good: bool
    send: Callable[[str, int, str], int | None]  # (host, port, path) -> status, None when unanswered


def _http(
    method: str, query: str, body: bytes, headers: dict[str, str]
) -> Callable[[str, int, str], int | None]:
    def send(host: str, port: int, path: str) -> int | None:
        connection = http.client.HTTPConnection(host, port, timeout=120)
        try:
            connection.request(method, path + query, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as e:
            ERRORS[type(e).__name__] += 1
            return None
        finally:
            connection.close()

    return send


def _raw(data: bytes) -> Callable[[str, int, str], int | None]:
    def send(host: str, port: int, path: str) -> int | None:
        try:
            with socket.create_connection((host, port), timeout=120) as sock:
                sock.sendall(data.replace(b"{path}", path.encode()))
                sock.shutdown(socket.SHUT_WR)
                head = sock.recv(64)
        except OSError as e:
            ERRORS[type(e).__name__] += 1
            return None
        parts = head.split(b" ", 2)
        return (
            int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None
        )

    return send


def _image(fmt: str, seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48 + seed % 7, 40), ((seed * 37) % 256, (seed * 91) % 256, 120)).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


def cases() -> list[Case]:
    png, jpeg = _image("PNG", 1), _image("JPEG", 2)
    b64 = base64.b64encode(png).decode()
    as_json = {"Content-Type": "application/json"}

    def body(text: str) -> bytes:
        return text.encode()

    good = [
        Case("png raw", True, _http("POST", "?top_k=3", png, {"Content-Type": "image/png"})),
        Case("jpeg raw", True, _http("POST", "", jpeg, {"Content-Type": "image/jpeg"})),
        Case("octet-stream", True, _http("POST", "", png, {"Content-Type": "application/octet-stream"})),
        Case("json top_k 7", True, _http("POST", "", body(json.dumps({"image": b64, "top_k": 7})), as_json)),
        Case(
            "json data URL",
            True,
            _http("POST", "", body(json.dumps({"image": "data:image/png;base64," + b64})), as_json),
        ),
        Case(
            "json urlsafe unpadded",
            True,
            _http(
                "POST",
                "",
                body(json.dumps({"image": base64.urlsafe_b64encode(png).decode().rstrip("=")})),
                as_json,
            ),
        ),
        Case(
            "json with BOM",
            True,
            _http("POST", "", b"\xef\xbb\xbf" + body(json.dumps({"image": b64})), as_json),
        ),
        Case(
            "same top_k twice",
            True,
            _http("POST", "?top_k=2", body(json.dumps({"image": b64, "top_k": 2})), as_json),
        ),
    ]
    hostile = [
        Case("top_k 1e2", False, _http("POST", "", body(f'{{"image": "{b64}", "top_k": 1e2}}'), as_json)),
        Case("top_k 1.0", False, _http("POST", "", body(f'{{"image": "{b64}", "top_k": 1.0}}'), as_json)),
        Case("top_k NaN", False, _http("POST", "", body(f'{{"image": "{b64}", "top_k": NaN}}'), as_json)),
        Case("top_k 1E400", False, _http("POST", "", body(f'{{"image": "{b64}", "top_k": 1E400}}'), as_json)),
        Case(
            "top_k 5000 digits",
            False,
            _http("POST", "", body(f'{{"image": "{b64}", "top_k": {"7" * 5000}}}'), as_json),
        ),
        Case("top_k true", False, _http("POST", "", body(f'{{"image": "{b64}", "top_k": true}}'), as_json)),
        Case("top_k fullwidth", False, _http("POST", "?top_k=%EF%BC%95", png, {"Content-Type": "image/png"})),
        Case("top_k superscript", False, _http("POST", "?top_k=%C2%B2", png, {"Content-Type": "image/png"})),
        Case("top_k 1_0", False, _http("POST", "?top_k=1_0", png, {"Content-Type": "image/png"})),
        Case("top_k repeated", False, _http("POST", "?top_k=1&top_k=2", png, {"Content-Type": "image/png"})),
        Case(
            "top_k query vs body",
            False,
            _http("POST", "?top_k=2", body(json.dumps({"image": b64, "top_k": 3})), as_json),
        ),
        Case("nested 10000", False, _http("POST", "", b"[" * 10_000 + b"]" * 10_000, as_json)),
        Case(
            "duplicate keys",
            False,
            _http("POST", "", body(f'{{"image": "{b64}", "image": "{b64}"}}'), as_json),
        ),
        Case("unknown field", False, _http("POST", "", body(json.dumps({"image": b64, "topk": 3})), as_json)),
        Case("top level list", False, _http("POST", "", body(json.dumps([b64])), as_json)),
        Case("not UTF-8", False, _http("POST", "", b'{"image": "\xff\xfe"}', as_json)),
        Case("UTF-16", False, _http("POST", "", json.dumps({"image": b64}).encode("utf-16"), as_json)),
        Case("bad base64", False, _http("POST", "", body(json.dumps({"image": b64[:-3] + "*"})), as_json)),
        Case("not an image", False, _http("POST", "", b"just some words", {"Content-Type": "image/png"})),
        Case("two content types", False, _http("POST", "", png, {"Content-Type": "image/png, image/jpeg"})),
        Case("text/plain", False, _http("POST", "", png, {"Content-Type": "text/plain"})),
        Case(
            "7 MB body", False, _http("POST", "", b"\x00" * (7 * 1024 * 1024), {"Content-Type": "image/png"})
        ),
        Case(
            "bad Content-Length",
            False,
            _raw(b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc"),
        ),
        Case(
            "Content-Length too big",
            False,
            _raw(b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
        ),
        Case("garbage request line", False, _raw(b"\x00\x01GARBAGE\r\n\r\n")),
        Case("HTTP/0.9", False, _raw(b"GET {path}\r\n")),
        Case("missing Host", False, _raw(b"POST {path} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")),
        Case(
            "bad chunk",
            False,
            _raw(b"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ),
    ]
    return good + hostile


# ---- the self-contained stack -------------------------------------------------------------------------


def write_artifact(dest: Path) -> Path:
    """A seeded, untrained resnet18 in the layout training writes (contracts/artifact.py), with code/."""
    sys.path.insert(0, str(REPO_ROOT / "training_code"))
    import torch

    import architectures
    import presets

    torch.manual_seed(0)
    torch.save(architectures.build_model("resnet18", len(LABELS), "none").state_dict(), dest / "model.pth")
    config = {
        "architecture": "resnet18",
        "num_classes": len(LABELS),
        "image_size": 32,
        "mean": list(presets.IMAGENET_MEAN),
        "std": list(presets.IMAGENET_STD),
        "precision": "fp32",
    }
    (dest / "model_config.json").write_text(json.dumps(config))
    (dest / "labels.json").write_text(json.dumps(LABELS))
    code = dest / "code"
    code.mkdir()
    shutil.copy(REPO_ROOT / "inference_code" / "inference.py", code)
    for name in ("presets.py", "architectures.py"):
        shutil.copy(REPO_ROOT / "training_code" / name, code)
    shutil.copytree(REPO_ROOT / "contracts", code / "contracts", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def start_model_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stepsage.local.sagemaker.model_server",
            "--model-dir",
            str(model_dir),
            "--port",
            "0",
            "--threads",
            str(threads),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "STEPSAGE_PRECISION": "fp32"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the model server exited ({process.wait()}) before it was ready")
    return process, int(json.loads(line)["port"])


def start_url(model_port: int) -> Any:
    """The Function URL with the inference Lambda's handler; its endpoint call goes to the model server."""
    for folder in ("lambdas/inference", "lambdas/common"):
        sys.path.insert(0, str(REPO_ROOT / folder))
    # One Metrics object serves every thread here, where Lambda runs one request per process: keep it quiet.
    os.environ.update(
        {
            "POWERTOOLS_METRICS_DISABLED": "1",
            # POST / serves <stack>-<ServedDataset>, "stepsage-bench".
            "STACK_NAME": "stepsage",
            "SERVED_DATASET": "bench",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "bench",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    import app
    import image_request

    from stepsage.local.errors import LambdaFunctionError
    from stepsage.local.function_url import FunctionUrlServer

    class DirectRuntime:
        """InvokeEndpoint without the network hop to SageMaker: a 4xx is ModelError's OriginalStatusCode."""

        def __init__(self, endpoint_name: str) -> None:
            self.endpoint_name = endpoint_name

        def classify(self, body: bytes, content_type: str) -> dict[str, Any]:
            connection = http.client.HTTPConnection("127.0.0.1", model_port, timeout=120)
            try:
                connection.request(
                    "POST",
                    "/invocations",
                    body=body,
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                )
                response = connection.getresponse()
                payload = response.read()
            finally:
                connection.close()
            if response.status != 200:
                raise image_request.endpoint_error(response.status, payload.decode("utf-8", "replace"))
            return json.loads(payload)

    app.EndpointRuntime = DirectRuntime

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "bench", 512, "bench"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def invoke(event: dict[str, Any]) -> Any:
        try:
            return app.lambda_handler(event, Context())
        except Exception as e:  # as the local Lambda runtime reports a function's failure: a 502
            raise LambdaFunctionError(type(e).__name__, str(e)) from e

    return FunctionUrlServer(invoke).start()


# ---- load and measure ---------------------------------------------------------------------------------


class PeakMemory:
    """Samples the RSS of processes (with their children, unless told) every 50 ms; `peak` in bytes."""

    def __init__(self, pids: list[int], with_children: bool = True) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.with_children = with_children
        self.peak: dict[int, int] = {p.pid: 0 for p in self.processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self.processes:
                try:
                    tree = [process, *process.children(recursive=True)] if self.with_children else [process]
                    rss = sum(p.memory_info().rss for p in tree)
                except psutil.Error:
                    continue
                self.peak[process.pid] = max(self.peak[process.pid], rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakMemory:
        self.before = {p.pid: p.memory_info().rss for p in self.processes}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_load(url: str, total: int, concurrency: int) -> tuple[list[tuple[Case, int | None, float]], float]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    mix = cases()
    plan = [mix[i % len(mix)] for i in range(total)]
    barrier = threading.Barrier(min(concurrency, total))

    def one(case: Case) -> tuple[Case, int | None, float]:
        try:
            barrier.wait(timeout=30)  # the first wave leaves together: `concurrency` requests in flight
        except threading.BrokenBarrierError:
            pass
        started = time.perf_counter()
        return case, case.send(host, port, path), time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, plan))
    return results, time.perf_counter() - started


def report(
    results: list[tuple[Case, int | None, float]], wall: float, memory: dict[str, tuple[int, int]]
) -> bool:
    by_status = collections.Counter(
        "no answer" if status is None else str(status) for _, status, _ in results
    )
    good = [(c, s) for c, s, _ in results if c.good]
    hostile = [(c, s) for c, s, _ in results if not c.good]
    good_ok = sum(s == 200 for _, s in good)
    hostile_4xx = sum(s is not None and 400 <= s < 500 for _, s in hostile)
    server_errors = sum(1 for _, s, _ in results if s is not None and s >= 500)
    unanswered = by_status.get("no answer", 0)
    latencies = sorted(t for _, _, t in results)
    print(f"requests {len(results)} ({len(good)} good, {len(hostile)} hostile) in {wall:.1f} s")
    print("answers by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
    print(f"good answered 200: {good_ok}/{len(good)}; hostile answered 4xx: {hostile_4xx}/{len(hostile)}")
    print(f"5xx: {server_errors}; unanswered: {unanswered}" + (f" ({dict(ERRORS)})" if ERRORS else ""))
    print(f"latency p50 {latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s")
    for name, (before, peak) in memory.items():
        print(f"memory {name}: {before / 2**20:.0f} MiB idle, {peak / 2**20:.0f} MiB peak")
    wrong = sorted(
        {
            f"{c.name} -> {s}"
            for c, s, _ in results
            if (c.good and s != 200) or (not c.good and not (s and 400 <= s < 500))
        }
    )
    for line in wrong:
        print(f"  unexpected: {line}")
    return server_errors == 0 and unanswered == 0 and good_ok == len(good)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running inference URL; default: serve a self-contained stack")
    parser.add_argument("--pid", type=int, help="with --url: the process serving it, for peak memory")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of the self-contained model server"
    )
    parser.add_argument("--write-artifact", type=Path, help=argparse.SUPPRESS)
    return parser


def main(args: argparse.Namespace) -> int:
    if args.write_artifact:
        write_artifact(args.write_artifact)
        return 0
    if args.url:
        with PeakMemory([args.pid] if args.pid else []) as memory:
            results, wall = run_load(args.url, args.requests, args.concurrency)
        named = {f"pid {k} and children": (memory.before[k], v) for k, v in memory.peak.items()}
        return 0 if report(results, wall, named) else 1
    with tempfile.TemporaryDirectory() as tmp:
        # In a child: torch in this process would count against the URL's memory.
        subprocess.run([sys.executable, __file__, "--write-artifact", tmp], check=True, cwd=REPO_ROOT)
        model_server, model_port = start_model_server(Path(tmp), args.threads)
        try:
            url = start_url(model_port).url
            with PeakMemory([os.getpid(), model_server.pid], with_children=False) as memory:
                results, wall = run_load(url, args.requests, args.concurrency)
            named = {
                "Function URL + Lambda (this process)": (
                    memory.before[os.getpid()],
                    memory.peak[os.getpid()],
                ),
                "model server": (memory.before[model_server.pid], memory.peak[model_server.pid]),
            }
        finally:
            model_server.terminate()
            model_server.wait(timeout=30)
    return 0 if report(results, wall, named) else 1


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
