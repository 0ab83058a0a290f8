"""A seekable read-only file over ranged reads, so an archive is read without downloading all of it."""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable, Iterable

# fetch(start, end_exclusive) -> exactly those bytes; one call is one ranged GET.
RangeFetcher = Callable[[int, int], bytes]

DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024


class RangedFile(io.RawIOBase):
    """Reads `size` bytes through `fetch`, one block at a time; memory holds at most one block.

    Without spans, a miss fetches up to `block_bytes` ahead. With spans (the byte ranges the caller will
    read), read-ahead never crosses a span's end, so skipped regions (junk entries) are never transferred.
    """

    def __init__(self, fetch: RangeFetcher, size: int, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        super().__init__()
        if size < 0 or block_bytes <= 0:
            raise ValueError("size must be >= 0 and block_bytes > 0")
        self._fetch = fetch
        self._size = size
        self._block_bytes = block_bytes
        self._pos = 0
        self._buffer = b""
        self._buffer_start = 0
        self._span_starts: list[int] = []
        self._span_ends: list[int] = []
        self.requests = 0
        self.bytes_fetched = 0

    @property
    def size(self) -> int:
        return self._size

    def set_spans(self, spans: Iterable[tuple[int, int]]) -> None:
        """Limit read-ahead to these [start, end) ranges; reads outside them fetch only what is asked."""
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self._span_starts = [start for start, _ in merged]
        self._span_ends = [end for _, end in merged]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise ValueError("negative seek position")
        self._pos = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, self._size - self._pos)
        if n <= 0:
            return b""
        parts: list[bytes] = []
        while n > 0:
            offset = self._pos - self._buffer_start
            if not 0 <= offset < len(self._buffer):
                self._fill(self._pos, n)
                offset = 0
            chunk = self._buffer[offset : offset + n]
            parts.append(chunk)
            self._pos += len(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _fill(self, start: int, wanted: int) -> None:
        end = min(self._size, start + max(wanted, self._block_bytes), self._readahead_end(start, wanted))
        data = self._fetch(start, end)
        if len(data) != end - start:
            raise OSError(f"ranged read {start}-{end} returned {len(data)} bytes")
        self.requests += 1
        self.bytes_fetched += len(data)
        self._buffer = data
        self._buffer_start = start

    def _readahead_end(self, start: int, wanted: int) -> int:
        if not self._span_starts:
            return self._size
        index = bisect.bisect_right(self._span_starts, start) - 1
        if index >= 0 and start < self._span_ends[index]:
            return max(self._span_ends[index], start + wanted)
        return start + wanted
