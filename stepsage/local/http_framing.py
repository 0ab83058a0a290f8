"""Strict HTTP/1.x framing for the local servers: a malformed request gets a 4xx, never a hang or a 5xx."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

# The longest request line the standard library reads before answering 414.
MAX_REQUEST_LINE = 65536
# Blank lines tolerated before a request line (RFC 9112 2.2: a client may send CRLF after a body).
MAX_LEADING_BLANK_LINES = 8
# A chunk-size line: 16 hex digits and a short extension are plenty.
MAX_CHUNK_LINE = 1024
MAX_TRAILER_LINES = 64
# After an error the client may still be sending its body; reading (and dropping) a bounded amount before
# the close lets it read our answer instead of a connection reset.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 2.0
# Connections the kernel queues before accept(): socketserver's default of 5 resets a burst of clients.
LISTEN_BACKLOG = 1024
_LENGTH_DIGITS = 18  # above any limit, below anything that costs to convert


class FramingError(Exception):
    """A request whose framing is wrong; `status` is the 4xx it gets, and the connection closes after."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StrictRequestHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with the gaps closed: HTTP/0.9, HTTP/2 and garbage request lines, unknown
    methods, a missing or repeated Host, bad or conflicting Content-Length, transfer codings, bodies that
    never arrive and stalled requests all get a JSON 4xx (with a status line) instead of a 5xx, an HTML
    page, a hang or a silent close."""

    protocol_version = "HTTP/1.1"
    # Errors found before the request's version is known still get a status line (0.9 would omit it).
    default_request_version = "HTTP/1.0"
    timeout = 60.0  # seconds to wait for a request's next bytes, idle keep-alive included
    body_timeout = 30.0  # seconds a whole body may take to arrive, however slowly it trickles
    error_key = "message"  # the JSON field an error's message goes in
    _answered = False
    _linger = False

    # ---- the request line and headers ---------------------------------------------------------------

    def handle_one_request(self) -> None:
        self._answered = False
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
            for _ in range(MAX_LEADING_BLANK_LINES):
                if line not in (b"\r\n", b"\n"):
                    break
                line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except (TimeoutError, ConnectionError):  # idle keep-alive, or a client gone before a request
            self.close_connection = True
            return
        self.raw_requestline = line
        if not line:
            self.close_connection = True
            return
        try:
            if len(line) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
                self.send_error(
                    HTTPStatus.REQUEST_URI_TOO_LONG, f"the request line exceeds {MAX_REQUEST_LINE}"
                )
                return
            if not self.parse_request():
                return
            getattr(self, "do_" + self.command)()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if not self._answered:
                with contextlib.suppress(OSError):
                    self.send_error(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive in time")
                    self.wfile.flush()
        except ConnectionError:  # the client left (a reset, a broken pipe): nobody is there to answer
            self.close_connection = True
            self._linger = False

    def parse_request(self) -> bool:
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.command, self.request_version = "", "HTTP/1.0"
            self.requestline = str(self.raw_requestline[:200], "iso-8859-1").rstrip("\r\n")
            self.send_error(
                HTTPStatus.BAD_REQUEST, f"bad request line {self.requestline!r}: use METHOD /path HTTP/1.1"
            )
            return False
        if not super().parse_request():
            return False
        try:
            self._check_headers()
        except FramingError as e:
            self.send_error(e.status, e.message)
            return False
        return True

    def _check_headers(self) -> None:
        if not hasattr(self, "do_" + self.command):
            raise FramingError(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command[:40]!r} is not allowed")
        hosts = self.headers.get_all("Host") or []
        if self.request_version == "HTTP/1.1" and len(hosts) != 1:
            raise FramingError(
                HTTPStatus.BAD_REQUEST, f"an HTTP/1.1 request needs one Host header; got {len(hosts)}"
            )
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        codings = self.headers.get_all("Transfer-Encoding") or []
        if lengths and codings:
            raise FramingError(HTTPStatus.BAD_REQUEST, "send Content-Length or Transfer-Encoding, not both")
        if len(lengths) > 1:
            raise FramingError(HTTPStatus.BAD_REQUEST, "the Content-Length headers disagree")
        for value in lengths:
            if not (value.isascii() and value.isdigit() and len(value) <= _LENGTH_DIGITS):
                raise FramingError(
                    HTTPStatus.BAD_REQUEST, f"Content-Length {value[:40]!r} is not a byte count"
                )
        if codings and (
            self.request_version != "HTTP/1.1" or [c.strip().lower() for c in codings] != ["chunked"]
        ):
            raise FramingError(
                HTTPStatus.BAD_REQUEST,
                f"Transfer-Encoding {', '.join(codings)[:80]!r} is not supported: use chunked (HTTP/1.1) or "
                "Content-Length",
            )

    # ---- the body ---------------------------------------------------------------------------------

    def has_body_framing(self) -> bool:
        return "Content-Length" in self.headers or "Transfer-Encoding" in self.headers

    def read_body(self, limit: int) -> bytes:
        """The body, by Content-Length or chunked, at most `limit` bytes within `body_timeout` seconds;
        no framing is an empty body. Raises FramingError (408, 413, 400)."""
        deadline = time.monotonic() + self.body_timeout
        try:
            if "Transfer-Encoding" in self.headers:
                return self._read_chunked(limit, deadline)
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                raise FramingError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes; the limit is {limit}"
                )
            return self._read_exact(length, deadline)
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.timeout)

    def _recv_within(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FramingError(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {self.body_timeout} s"
            )
        self.connection.settimeout(left)

    def _read_exact(self, length: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        remaining = length
        while remaining:
            self._recv_within(deadline)
            try:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
            except TimeoutError as e:
                raise FramingError(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"the body stalled after {length - remaining} of {length} bytes",
                ) from e
            if not chunk:
                raise FramingError(
                    HTTPStatus.BAD_REQUEST, f"the body ended after {length - remaining} of {length} bytes"
                )
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_line(self, deadline: float) -> bytes:
        self._recv_within(deadline)
        try:
            line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        except TimeoutError as e:
            raise FramingError(HTTPStatus.REQUEST_TIMEOUT, "the chunked body stalled") from e
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise FramingError(HTTPStatus.BAD_REQUEST, "a chunk-size line is too long or cut short")
        return line

    def _read_chunked(self, limit: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._read_line(deadline).split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                raise FramingError(HTTPStatus.BAD_REQUEST, f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise FramingError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the chunked body exceeds the limit of {limit} bytes",
                )
            chunks.append(self._read_exact(size, deadline))
            if self._read_line(deadline).strip():
                raise FramingError(HTTPStatus.BAD_REQUEST, "a chunk is longer than its size says")
        for _ in range(MAX_TRAILER_LINES):
            if not self._read_line(deadline).strip():
                return b"".join(chunks)
        raise FramingError(HTTPStatus.BAD_REQUEST, "too many trailer lines")

    # ---- answers ----------------------------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A JSON error that closes the connection (the standard library's sends HTML)."""
        self.log_error("code %d, message %s", code, message)
        status = HTTPStatus(code)
        body = json.dumps({self.error_key: message or status.phrase}).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True
        self._linger = True

    def send_framing_error(self, error: FramingError) -> None:
        self.send_error(error.status, error.message)

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain_before_close()

    def _drain_before_close(self) -> None:
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                drained += len(chunk)
