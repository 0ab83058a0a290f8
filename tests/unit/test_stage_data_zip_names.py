"""Zip entry names as real tools write them: UTF-8 with and without flag bit 11, cp437, Info-ZIP's Unicode
Path field (fresh and stale), generated over many scripts."""

from __future__ import annotations

import io
import struct
import unicodedata
import zipfile
import zlib

import pytest

pytestmark = pytest.mark.unit

import conftest_stage_data  # noqa: E402,F401  (puts the Lambda's flat modules on sys.path)
from archive import read_central_directory  # noqa: E402
from dataset_errors import DatasetValidationError  # noqa: E402
from ranged import RangedFile  # noqa: E402
from staging import plan_layout  # noqa: E402

FLAG_UTF8 = 0x800
# Names in many scripts; each must come back exactly, whichever way a tool stored it.
WORDS = [
    "café", "Größe", "ñandú", "smørrebrød", "Dvořák", "Łódź", "İstanbul", "ελληνικά", "кошка", "собака",
    "ねこ", "犬", "고양이", "猫咪", "قطة", "חתול", "बिल्ली", "แมว", "🐱", "🐶‍🦺", "e\u0301cole",
    "Ærø", "naïve", "façade", "Ωmega", "ß", "ǅ", "x\u200dy", "ﬁle",
]  # fmt: skip


def central_zip(names: list[tuple[bytes, int, bytes]]) -> bytes:
    """A stored zip whose entries have exactly these (raw name, flags, central extra field) triples."""
    out, central = bytearray(), bytearray()
    for raw, flags, extra in names:
        data = raw[:8]  # content is irrelevant to names
        crc = zlib.crc32(data)
        offset = len(out)
        size = len(data)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, 0, 0, 0x21, crc, size, size,
                           len(raw), 0) + raw + data  # fmt: skip
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, 0, 0, 0x21, crc, size,
                               size, len(raw), len(extra), 0, 0, 0, 0o100644 << 16, offset)  # fmt: skip
        central += raw + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(names), len(names), len(central), len(out), 0)
    return bytes(out + central + end)


def names_of(data: bytes) -> list[str]:
    file = RangedFile(lambda start, end: data[start:end], len(data))
    return [entry.name for entry in read_central_directory(file, max_entries=1000).entries]


def unicode_path(name: str, raw: bytes, *, crc: int | None = None, version: int = 1) -> bytes:
    body = struct.pack("<BL", version, zlib.crc32(raw) if crc is None else crc) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


@pytest.mark.parametrize("word", WORDS)
def test_utf8_names_without_the_flag_are_utf8_not_cp437(word: str) -> None:
    # macOS Archive Utility (NFD), 7-Zip, Info-ZIP and Windows in a UTF-8 locale write these.
    for form in ("NFC", "NFD"):
        text = unicodedata.normalize(form, word)
        name = f"train/{text}/{text}.jpg"
        assert names_of(central_zip([(name.encode(), 0, b"")])) == [name]
        assert names_of(central_zip([(name.encode(), FLAG_UTF8, b"")])) == [name]


def _cp437_only(word: str) -> bool:
    try:
        word.encode("cp437").decode("utf-8")
    except UnicodeEncodeError:
        return False  # not writable in cp437
    except UnicodeDecodeError:
        return True
    return False  # ASCII: the same either way


CP437_WORDS = [w for w in WORDS if _cp437_only(w)]


@pytest.mark.parametrize("word", [*CP437_WORDS, "Ñandú", "Çà", "ÿes"])
def test_cp437_names_that_are_not_utf8_decode_as_cp437(word: str) -> None:
    assert _cp437_only(word)
    raw = f"train/{word}/x.jpg".encode("cp437")
    assert names_of(central_zip([(raw, 0, b"")])) == [f"train/{word}/x.jpg"]


@pytest.mark.parametrize("word", WORDS)
def test_the_info_zip_unicode_path_field_wins_when_its_crc_matches(word: str) -> None:
    name = f"train/{word}/x.jpg"
    raw = f"train/{'_' * len(word)}/x.jpg".encode()  # what a tool without Unicode writes in the header
    assert names_of(central_zip([(raw, 0, unicode_path(name, raw))])) == [name]
    # A stale field (the entry was renamed by a tool that keeps extra fields) or an unknown version: ignored.
    assert names_of(central_zip([(raw, 0, unicode_path(name, raw, crc=zlib.crc32(raw) ^ 1))])) == [
        raw.decode()
    ]
    assert names_of(central_zip([(raw, 0, unicode_path(name, raw, version=2))])) == [raw.decode()]


def test_a_unicode_path_field_that_is_not_utf8_is_ignored() -> None:
    raw = b"train/a/x.jpg"
    body = struct.pack("<BL", 1, zlib.crc32(raw)) + b"\xff\xfe"
    assert names_of(central_zip([(raw, 0, struct.pack("<HH", 0x7075, len(body)) + body)])) == [
        "train/a/x.jpg"
    ]


@pytest.mark.parametrize("raw", [b"train/a/\xff.jpg", b"train/\xc3/x.jpg", b"train/a/\xed\xa0\x80.jpg"])
def test_a_name_flagged_utf8_that_is_not_is_refused(raw: bytes) -> None:
    with pytest.raises(DatasetValidationError, match="flagged UTF-8 but is not"):
        names_of(central_zip([(raw, FLAG_UTF8, b"")]))


def test_a_zip_written_on_a_mac_stages_nfc_class_names() -> None:
    """Archive Utility: NFD names, no flag. The classes come out NFC, the same as typed on Linux."""
    raws = [
        (unicodedata.normalize("NFD", f"data/train/{label}/{i}.jpg").encode(), 0, b"")
        for label in ("café", "crème")
        for i in range(3)
    ]
    plan = plan_layout((name, False) for name in names_of(central_zip(raws)))
    assert plan.labels == ("café", "crème")
    assert all(unicodedata.is_normalized("NFC", image.label) for image in plan.images)


def test_pythons_zipfile_archives_still_read_the_same() -> None:
    buffer = io.BytesIO()
    names = [f"train/{word}/x.jpg" for word in WORDS]
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    assert names_of(buffer.getvalue()) == names
