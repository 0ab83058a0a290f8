"""Test helpers for stage_data: import its flat modules, craft zips byte by byte, make tiny images."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
STAGE_DATA_DIR = ROOT / "lambdas" / "stage_data"
COMMON_DIR = ROOT / "lambdas" / "common"
EVENTS_DIR = ROOT / "events"

# The Lambda imports its modules flat (as in its deployment package), so tests put its folder on the path.
for folder in (STAGE_DATA_DIR, COMMON_DIR):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def load_app() -> ModuleType:
    """stage_data's app.py under a unique name, so other Lambdas' app modules cannot shadow it."""
    name = "stage_data_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STAGE_DATA_DIR / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def image_bytes(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8), fmt: str = "JPEG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width` x `height` but whose data is tiny: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def dataset_files(
    labels: Iterable[str] = ("001.Affenpinscher", "002.Afghan_hound"),
    *,
    per_class: Mapping[str, int] | None = None,
    splits: Iterable[str] = ("train", "valid", "test"),
    top: str | None = None,
) -> dict[str, bytes]:
    """An ImageFolder tree as {name: bytes}; each image is distinct so hashes are distinct."""
    counts = dict(per_class or {"train": 6, "valid": 2, "test": 2})
    files: dict[str, bytes] = {}
    prefix = f"{top}/" if top else ""
    for split in splits:
        for label_index, label in enumerate(labels):
            for index in range(counts.get(split, 2)):
                color = (label_index * 40 % 256, index * 17 % 256, len(split) * 30)
                files[f"{prefix}{split}/{label}/{label.split('.')[-1]}_{index:04d}.jpg"] = image_bytes(color)
    return files


def zip_bytes(
    files: Mapping[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED, dirs: Iterable[str] = ()
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for directory in dirs:
            archive.writestr(zipfile.ZipInfo(directory.rstrip("/") + "/"), b"")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@dataclass
class RawEntry:
    """One zip entry with every header field under the test's control (sizes and CRC may lie)."""

    name: str
    payload: bytes = b""  # the bytes as stored (already deflated when method is 8)
    real: bytes | None = None  # the content, for the default CRC and size
    method: int = 0
    flags: int = 0
    external_attr: int = 0o100644 << 16
    file_size: int | None = None
    crc: int | None = None
    local_name: str | None = None


def raw_zip(entries: Iterable[RawEntry], *, prefix: bytes = b"") -> bytes:
    """A zip written field by field, with `prefix` bytes before the first entry."""
    out = bytearray(prefix)
    central = bytearray()
    count = 0
    for entry in entries:
        count += 1
        name = entry.name.encode()
        local_name = (entry.local_name if entry.local_name is not None else entry.name).encode()
        real = entry.real if entry.real is not None else entry.payload
        crc = entry.crc if entry.crc is not None else zlib.crc32(real)
        size = entry.file_size if entry.file_size is not None else len(real)
        flags = entry.flags | (0x800 if not entry.name.isascii() else 0)
        offset = len(out)
        out += struct.pack(
            "<4s2B4HL2L2H",
            b"PK\x03\x04",
            20,
            0,
            flags,
            entry.method,
            0,
            0x21,
            crc,
            len(entry.payload),
            size,
            len(local_name),
            0,
        )
        out += local_name + entry.payload
        central += struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            flags,
            entry.method,
            0,
            0x21,
            crc,
            len(entry.payload),
            size,
            len(name),
            0,
            0,
            0,
            0,
            entry.external_attr,
            offset,
        )
        central += name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + end)


def good_raw_entries(top: str = "") -> list[RawEntry]:
    """A minimal valid layout (two classes, train only) as raw entries, for mixing in one bad entry."""
    entries = []
    for label in ("001.Affenpinscher", "002.Afghan_hound"):
        for index in range(3):
            data = image_bytes((index * 60, 10, 10))
            entries.append(RawEntry(f"{top}train/{label}/img_{index}.jpg", payload=data))
    return entries
