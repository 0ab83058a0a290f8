"""Raw-socket HTTP for hostile-request tests: send exact bytes, read one answer, and the cases by class."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


@dataclass
class RawAnswer:
    status: int | None  # None: the server closed or stalled without a status line
    head: bytes
    body: bytes
    seconds: float


def exchange(port: int, data: bytes, *, timeout: float = 15.0, half_close: bool = False) -> RawAnswer:
    """Send `data` (then half-close: the client will send nothing more) and read one final answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before it has read everything
        received = b""
        try:
            while True:
                while re.match(rb"HTTP/1\.[01] 1\d\d [^\r\n]*\r\n\r\n", received):  # 100 Continue
                    received = received.partition(b"\r\n\r\n")[2]
                head, sep, rest = received.partition(b"\r\n\r\n")
                if sep:
                    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if match and len(rest) >= int(match.group(1)):
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    match = _STATUS_LINE.match(head)
    return RawAnswer(int(match.group(1)) if match else None, head, body, time.monotonic() - started)


def framing_cases(path: str) -> list[tuple[str, bytes, int | None, bool]]:
    """(name, raw request, the status it must get (None: any 2xx-4xx), half-close after sending) for a POST
    route at `path`."""
    p = path.encode()

    def post(headers: bytes, body: bytes = b"x") -> bytes:
        return b"POST " + p + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n" + body

    cases: list[tuple[str, bytes, int | None]] = [
        ("HTTP/0.9 GET", b"GET " + p + b"\r\n", 400),
        ("HTTP/0.9 POST", b"POST " + p + b"\r\n", 400),
        ("garbage line", b"GARBAGE\r\n\r\n", 400),
        ("binary line", b"\x00\x01\x02\xff\xfe\r\n\r\n", 400),
        ("only spaces", b"   \r\n\r\n", 400),
        ("four words", b"GET " + p + b" x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("lowercase version", b"GET " + p + b" http/1.1\r\nHost: a\r\n\r\n", 400),
        ("unknown method", b"BREW " + p + b" HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        ("binary method", b"G\xffT " + p + b" HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        ("long method", b"A" * 5000 + b" " + p + b" HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        ("request line too long", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (
            "header line too long",
            b"GET " + p + b" HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
        ),
        ("too many headers", b"GET " + p + b" HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 200 + b"\r\n", 431),
        ("missing Host", b"POST " + p + b" HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),
        ("two Hosts", b"POST " + p + b" HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\n\r\nx", 400),
        ("HTTP/1.0 without Host", b"POST " + p + b" HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", None),
        (
            "length and chunked",
            post(b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", b"1\r\nx\r\n0\r\n\r\n"),
            400,
        ),
        ("lengths disagree", post(b"Content-Length: 1\r\nContent-Length: 2\r\n"), 400),
        ("lengths agree", post(b"Content-Length: 1\r\nContent-Length: 1\r\n"), None),
        ("length with spaces", post(b"Content-Length:   1  \r\n"), None),
        ("gzip coding", post(b"Transfer-Encoding: gzip\r\n"), 400),
        ("chunked then gzip", post(b"Transfer-Encoding: chunked, gzip\r\n"), 400),
        (
            "chunked over HTTP/1.0",
            b"POST " + p + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        ("chunked", post(b"Transfer-Encoding: chunked\r\n", b"1\r\nx\r\n0\r\n\r\n"), None),
        (
            "Chunked with extension and trailer",
            post(b"Transfer-Encoding: Chunked\r\n", b"1;a=b\r\nx\r\n0\r\nT: 1\r\n\r\n"),
            None,
        ),
        ("bad chunk size", post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nx\r\n0\r\n\r\n"), 400),
        ("negative chunk size", post(b"Transfer-Encoding: chunked\r\n", b"-1\r\nx\r\n0\r\n\r\n"), 400),
        ("empty chunk size", post(b"Transfer-Encoding: chunked\r\n", b"\r\nx\r\n0\r\n\r\n"), 400),
        ("huge chunk size", post(b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\nx"), 413),
        ("giant chunk size line", post(b"Transfer-Encoding: chunked\r\n", b"1" * 5000 + b"\r\n"), 400),
        (
            "chunk longer than its size",
            post(b"Transfer-Encoding: chunked\r\n", b"1\r\nxyz\r\n0\r\n\r\n"),
            400,
        ),
        ("chunks end early", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nab"), 400),
        ("no length, no body", b"POST " + p + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", None),
        ("body shorter than its length, then close", post(b"Content-Length: 10\r\n", b"abc"), 400),
        ("length beyond any limit", post(b"Content-Length: 999999999999\r\n"), 413),
        ("length with too many digits", post(b"Content-Length: " + b"9" * 40 + b"\r\n"), 400),
        (
            "expect 100-continue, length beyond limit",
            post(b"Expect: 100-continue\r\nContent-Length: 999999999999\r\n", b""),
            413,
        ),
    ]
    for value in (
        b"-1",
        b"abc",
        b"1.5",
        b"0x10",
        b"1e3",
        b"+1",
        b"1_0",
        b"1,1",
        b"",
        b"\xc2\xb2",
        b"\xef\xbc\x95",
        b"\x00",
    ):
        cases.append((f"Content-Length {value!r}", post(b"Content-Length: " + value + b"\r\n"), 400))
    ends_early = ("body shorter than its length, then close", "chunks end early")
    return [(name, data, status, name in ends_early) for name, data, status in cases]
