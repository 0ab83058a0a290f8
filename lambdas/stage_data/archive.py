"""Safe zip walking: the central directory read from the end, each entry inflated with real bytes counted."""

from __future__ import annotations

import stat
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Protocol

from dataset_errors import DatasetValidationError

EOCD = struct.Struct("<4s4H2LH")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")

EOCD_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
CENTRAL_SIGNATURE = b"PK\x01\x02"
LOCAL_SIGNATURE = b"PK\x03\x04"
ZIP64_EXTRA_ID = 0x0001
UNICODE_PATH_EXTRA_ID = 0x7075  # Info-ZIP: version 1, CRC-32 of the header's name, the name in UTF-8
MAX_COMMENT = 0xFFFF

STORED = 0
DEFLATED = 8
SUPPORTED_METHODS = {STORED: "stored", DEFLATED: "deflate"}
KNOWN_METHODS = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "AES"}

FLAG_ENCRYPTED = 0x0001
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_HEADERS = 0x2000
ENCRYPTION_FLAGS = FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS
MSDOS_DIRECTORY = 0x10

# Names plus extra fields above this per entry only appear in crafted archives; it bounds the
# central directory we agree to parse before any entry is read.
MAX_CENTRAL_RECORD_BYTES = 46 + 2048
READ_CHUNK = 64 * 1024


class SeekableReader(Protocol):
    @property
    def size(self) -> int: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory record, already checked for what can be checked without reading data."""

    name: str
    raw_name: bytes
    is_dir: bool
    method: int
    crc32: int
    compressed_size: int
    file_size: int
    header_offset: int
    data_limit: int  # no byte of this entry may lie at or past this offset (the next header or the CD)


@dataclass(frozen=True)
class CentralDirectory:
    entries: list[ZipEntry]
    offset: int
    size: int


@dataclass(frozen=True)
class InflateLimits:
    max_bytes: int
    max_ratio: float
    ratio_floor_bytes: int


def read_central_directory(file: SeekableReader, *, max_entries: int) -> CentralDirectory:
    """Parse the end records and the central directory, rejecting anything unsafe before data is read."""
    total, cd_size, cd_offset, cd_end = _read_end_records(file)
    if total > max_entries:
        raise DatasetValidationError(f"archive has {total} entries; the limit is {max_entries} (MAX_ENTRIES)")
    if cd_size > max(total, 1) * MAX_CENTRAL_RECORD_BYTES:
        raise DatasetValidationError(f"central directory of {cd_size} bytes is too large for {total} entries")
    if cd_offset + cd_size != cd_end:
        raise DatasetValidationError(
            "archive has data before or inside its central directory (self-extracting or damaged zip)"
        )
    file.seek(cd_offset)
    records = [_read_central_record(file) for _ in range(total)]
    if file.seek(0, 1) != cd_end:
        raise DatasetValidationError("central directory size does not match its records")
    return CentralDirectory(_bound_entries(records, cd_offset), cd_offset, cd_size)


def _read_end_records(file: SeekableReader) -> tuple[int, int, int, int]:
    if file.size < EOCD.size:
        raise DatasetValidationError("not a zip archive (too short for an end of central directory record)")
    tail_start = max(0, file.size - EOCD.size - MAX_COMMENT)
    file.seek(tail_start)
    tail = file.read(file.size - tail_start)
    position = len(tail)
    while True:
        position = tail.rfind(EOCD_SIGNATURE, 0, position)
        if position < 0:
            raise DatasetValidationError("not a zip archive (no end of central directory record)")
        if position + EOCD.size <= len(tail):
            fields = EOCD.unpack_from(tail, position)
            if position + EOCD.size + fields[7] == len(tail):
                break
    _, disk, cd_disk, disk_entries, total, cd_size, cd_offset, _ = fields
    eocd_offset = tail_start + position
    locator_offset = eocd_offset - ZIP64_LOCATOR.size
    if locator_offset >= 0:
        file.seek(locator_offset)
        locator = ZIP64_LOCATOR.unpack(file.read(ZIP64_LOCATOR.size))
        if locator[0] == ZIP64_LOCATOR_SIGNATURE:
            return _read_zip64_end(file, locator[2], locator_offset)
    if disk or cd_disk or disk_entries != total:
        raise DatasetValidationError("multi-part (spanned) zip archives are not supported")
    return total, cd_size, cd_offset, eocd_offset


def _read_zip64_end(
    file: SeekableReader, record_offset: int, locator_offset: int
) -> tuple[int, int, int, int]:
    if record_offset + ZIP64_EOCD.size > locator_offset:
        raise DatasetValidationError("zip64 end record points outside the archive")
    file.seek(record_offset)
    fields = ZIP64_EOCD.unpack(file.read(ZIP64_EOCD.size))
    signature, _, _, _, disk, cd_disk, disk_entries, total, cd_size, cd_offset = fields
    if signature != ZIP64_EOCD_SIGNATURE:
        raise DatasetValidationError("zip64 end record is damaged")
    if disk or cd_disk or disk_entries != total:
        raise DatasetValidationError("multi-part (spanned) zip archives are not supported")
    return total, cd_size, cd_offset, record_offset


def _read_central_record(file: SeekableReader) -> ZipEntry:
    header = file.read(CENTRAL_HEADER.size)
    if len(header) != CENTRAL_HEADER.size or header[:4] != CENTRAL_SIGNATURE:
        raise DatasetValidationError("central directory is damaged (bad record signature)")
    (
        _,
        _,
        _,
        _,
        _,
        flags,
        method,
        _,
        _,
        crc,
        compressed_size,
        file_size,
        name_length,
        extra_length,
        comment_length,
        disk_start,
        _,
        external_attr,
        header_offset,
    ) = CENTRAL_HEADER.unpack(header)
    raw_name = file.read(name_length)
    extra = file.read(extra_length)
    file.read(comment_length)
    name = _decode_name(raw_name, flags, extra)
    if len(raw_name) != name_length or len(extra) != extra_length:
        raise DatasetValidationError(f"central directory is truncated at {name!r}")
    file_size, compressed_size, header_offset, disk_start = _apply_zip64_extra(
        extra, name, file_size, compressed_size, header_offset, disk_start
    )
    if disk_start:
        raise DatasetValidationError(f"entry {name!r} lives on another disk of a multi-part archive")
    if flags & ENCRYPTION_FLAGS or method == 99:
        raise DatasetValidationError(f"entry {name!r} is encrypted; upload an archive without a password")
    mode = external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise DatasetValidationError(f"entry {name!r} is a symbolic link; links are not allowed")
    if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
        raise DatasetValidationError(
            f"entry {name!r} is a special file (mode {oct(mode)}); only files are allowed"
        )
    if method not in SUPPORTED_METHODS:
        label = KNOWN_METHODS.get(method, "unknown")
        raise DatasetValidationError(
            f"entry {name!r} uses compression method {method} ({label}); only stored (0) and deflate (8) are "
            "supported"
        )
    is_dir = name.endswith("/") or stat.S_ISDIR(mode) or bool(external_attr & MSDOS_DIRECTORY)
    if is_dir and (file_size or compressed_size):
        raise DatasetValidationError(f"directory entry {name!r} carries data")
    if method == STORED and compressed_size != file_size:
        raise DatasetValidationError(f"stored entry {name!r} has different compressed and real sizes")
    return ZipEntry(name, raw_name, is_dir, method, crc, compressed_size, file_size, header_offset, 0)


def _decode_name(raw_name: bytes, flags: int, extra: bytes = b"") -> str:
    """The entry's name as the tool that wrote it meant it.

    With flag bit 11 the name is UTF-8 by the spec. Without it, the Info-ZIP Unicode Path field wins when
    its CRC still matches the name (an older tool renaming the entry leaves a stale field behind); then a
    name that is valid UTF-8 is UTF-8, as macOS Archive Utility, 7-Zip, Info-ZIP and Windows in a UTF-8
    locale write it without the flag (non-ASCII cp437 text is almost never valid UTF-8); cp437 last.
    """
    if flags & FLAG_UTF8:
        try:
            return raw_name.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetValidationError(f"entry name {raw_name!r} is flagged UTF-8 but is not") from e
    unicode_path = _unicode_path(raw_name, extra)
    if unicode_path is not None:
        return unicode_path
    try:
        return raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return raw_name.decode("cp437")


def _unicode_path(raw_name: bytes, extra: bytes) -> str | None:
    for field_id, body in _extra_fields(extra):
        if field_id != UNICODE_PATH_EXTRA_ID or len(body) < 5 or body[0] != 1:
            continue
        if struct.unpack_from("<L", body, 1)[0] != zlib.crc32(raw_name):
            continue
        try:
            return body[5:].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    """(id, body) of each complete extra field; a truncated tail is left to _apply_zip64_extra to refuse."""
    fields = []
    position = 0
    while position + 4 <= len(extra):
        field_id, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if len(body) != length:
            break
        fields.append((field_id, body))
        position += 4 + length
    return fields


def _apply_zip64_extra(
    extra: bytes, name: str, file_size: int, compressed_size: int, header_offset: int, disk_start: int
) -> tuple[int, int, int, int]:
    position = 0
    while position + 4 <= len(extra):
        field_id, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if len(body) != length:
            raise DatasetValidationError(f"entry {name!r} has a truncated extra field")
        if field_id == ZIP64_EXTRA_ID:
            # Only the fields whose 32-bit value is saturated appear, in this fixed order.
            values = iter(struct.unpack_from(f"<{length // 8}Q", body)) if length >= 8 else iter(())
            try:
                if file_size == 0xFFFFFFFF:
                    file_size = next(values)
                if compressed_size == 0xFFFFFFFF:
                    compressed_size = next(values)
                if header_offset == 0xFFFFFFFF:
                    header_offset = next(values)
            except StopIteration as e:
                raise DatasetValidationError(f"entry {name!r} has a short zip64 extra field") from e
        position += 4 + length
    return file_size, compressed_size, header_offset, disk_start


def _bound_entries(entries: list[ZipEntry], cd_offset: int) -> list[ZipEntry]:
    """Give each entry the offset its bytes may not cross, rejecting overlapping or duplicate entries.

    Overlapping entries are how the densest zip bombs reuse one compressed stream many times.
    """
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise DatasetValidationError(f"entry {entry.name!r} appears twice in the archive")
        seen.add(entry.name)
    by_offset = sorted(entries, key=lambda entry: entry.header_offset)
    limits: dict[str, int] = {}
    for index, entry in enumerate(by_offset):
        limit = by_offset[index + 1].header_offset if index + 1 < len(by_offset) else cd_offset
        minimal_end = entry.header_offset + LOCAL_HEADER.size + len(entry.raw_name) + entry.compressed_size
        if minimal_end > limit:
            raise DatasetValidationError(
                f"entry {entry.name!r} overlaps the next entry or the central directory"
            )
        limits[entry.name] = limit
    return [replace(entry, data_limit=limits[entry.name]) for entry in entries]


def entry_span(entry: ZipEntry) -> tuple[int, int]:
    """The byte range that reading `entry` touches (its local header and data), for read-ahead planning."""
    return entry.header_offset, entry.data_limit


def read_entry(file: SeekableReader, entry: ZipEntry, limits: InflateLimits, *, limit_name: str) -> bytes:
    """Inflate one entry, counting real output bytes and stopping as soon as a limit is crossed.

    The archive's declared sizes decide nothing here: output is produced in bounded steps, so a lying
    header or a bomb costs at most `limits.max_bytes` of memory before it is rejected.
    """
    data_start = _data_start(file, entry)
    if data_start + entry.compressed_size > entry.data_limit:
        raise DatasetValidationError(f"entry {entry.name!r} overlaps the next entry")
    file.seek(data_start)
    output = bytearray()
    crc = 0
    consumed = 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if entry.method == DEFLATED else None
    remaining = entry.compressed_size
    while remaining:
        chunk = file.read(min(READ_CHUNK, remaining))
        if not chunk:
            raise DatasetValidationError(f"entry {entry.name!r} is truncated")
        remaining -= len(chunk)
        consumed += len(chunk)
        pending = chunk
        while pending:
            if inflater is None:
                produced, pending = pending, b""
            else:
                try:
                    produced = inflater.decompress(pending, limits.max_bytes - len(output) + 1)
                except zlib.error as e:
                    raise DatasetValidationError(f"entry {entry.name!r} has corrupt compressed data") from e
                pending = inflater.unconsumed_tail
            output += produced
            crc = zlib.crc32(produced, crc)
            _check_growth(entry, len(output), consumed, limits, limit_name)
            if inflater is not None and inflater.eof:
                break
    if inflater is not None:
        if not inflater.eof:
            raise DatasetValidationError(f"entry {entry.name!r} ends before its compressed stream does")
        tail = inflater.flush()
        output += tail
        crc = zlib.crc32(tail, crc)
        _check_growth(entry, len(output), consumed, limits, limit_name)
    if len(output) != entry.file_size:
        raise DatasetValidationError(
            f"entry {entry.name!r} inflates to {len(output)} bytes but its header claims {entry.file_size}"
        )
    if crc != entry.crc32:
        raise DatasetValidationError(f"entry {entry.name!r} fails its CRC-32 check")
    return bytes(output)


def _check_growth(
    entry: ZipEntry, produced: int, consumed: int, limits: InflateLimits, limit_name: str
) -> None:
    if produced > limits.max_bytes:
        raise DatasetValidationError(
            f"entry {entry.name!r} inflates to more than {limits.max_bytes} bytes ({limit_name}); "
            f"its header claims {entry.file_size} (possible zip bomb)"
        )
    if produced > limits.ratio_floor_bytes and produced > limits.max_ratio * max(consumed, 1):
        raise DatasetValidationError(
            f"entry {entry.name!r} inflates {produced / max(consumed, 1):.0f}x from {consumed} compressed "
            "bytes; "
            f"the limit is {limits.max_ratio:.0f}x (possible zip bomb)"
        )


def _data_start(file: SeekableReader, entry: ZipEntry) -> int:
    file.seek(entry.header_offset)
    header = file.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size or header[:4] != LOCAL_SIGNATURE:
        raise DatasetValidationError(f"entry {entry.name!r} has no local header where the directory says")
    _, _, _, flags, method, _, _, _, _, _, name_length, extra_length = LOCAL_HEADER.unpack(header)
    if flags & ENCRYPTION_FLAGS:
        raise DatasetValidationError(
            f"entry {entry.name!r} is encrypted; upload an archive without a password"
        )
    if method != entry.method:
        raise DatasetValidationError(f"entry {entry.name!r} names different methods in its two headers")
    local_name = file.read(name_length)
    if local_name != entry.raw_name:
        raise DatasetValidationError(f"entry {entry.name!r} has a different name in its local header")
    return entry.header_offset + LOCAL_HEADER.size + name_length + extra_length
