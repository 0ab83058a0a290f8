"""stage_data's ranged file and safe zip walker, on archives crafted byte by byte."""

from __future__ import annotations

import io
import random
import zipfile

import pytest
from conftest_stage_data import RawEntry, dataset_files, deflate, good_raw_entries, raw_zip, zip_bytes

pytestmark = pytest.mark.unit

# The Lambda's flat modules, importable once conftest_stage_data has put its folder on sys.path.
from archive import InflateLimits, entry_span, read_central_directory, read_entry  # noqa: E402
from dataset_errors import DatasetValidationError  # noqa: E402
from ranged import RangedFile  # noqa: E402

LIMITS = InflateLimits(max_bytes=1024 * 1024, max_ratio=200, ratio_floor_bytes=64 * 1024)


def ranged(data: bytes, block_bytes: int = 1024) -> tuple[RangedFile, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    return RangedFile(fetch, len(data), block_bytes=block_bytes), calls


def entries_of(data: bytes, max_entries: int = 1000):
    return read_central_directory(ranged(data)[0], max_entries=max_entries).entries


# --- RangedFile ---


def test_ranged_file_reads_and_seeks_like_a_file() -> None:
    data = bytes(range(256)) * 40
    file, calls = ranged(data, block_bytes=100)
    assert file.read(10) == data[:10]
    assert file.seek(-5, io.SEEK_END) == len(data) - 5
    assert file.read() == data[-5:]
    file.seek(3000)
    buffer = bytearray(250)
    assert file.readinto(buffer) == 250 and bytes(buffer) == data[3000:3250]
    assert file.read(0) == b"" and file.tell() == 3250
    assert calls[0] == (0, 100)
    assert file.requests == len(calls) and file.bytes_fetched == sum(end - start for start, end in calls)


def test_ranged_file_serves_sequential_reads_from_one_block() -> None:
    file, calls = ranged(b"x" * 10_000, block_bytes=4096)
    for _ in range(40):
        file.read(100)
    assert calls == [(0, 4096)]


def test_spans_stop_read_ahead_at_their_end_and_outside_fetch_only_what_is_asked() -> None:
    file, calls = ranged(b"y" * 10_000, block_bytes=8192)
    file.set_spans([(100, 300), (250, 400), (5000, 5100)])
    file.seek(120)
    file.read(10)
    file.seek(6000)
    file.read(7)
    assert calls == [(120, 400), (6000, 6007)]


def test_ranged_file_refuses_a_short_fetch() -> None:
    file = RangedFile(lambda start, end: b"short", 1000)
    with pytest.raises(OSError, match="returned 5 bytes"):
        file.read(100)


def test_zipfile_can_read_through_a_ranged_file() -> None:
    files = dataset_files(splits=("train",))
    file, _ = ranged(zip_bytes(files), block_bytes=512)
    with zipfile.ZipFile(file) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files


# --- central directory ---


def test_central_directory_lists_entries_with_limits_and_dirs() -> None:
    files = dataset_files(top="dogImages", splits=("train",))
    entries = entries_of(zip_bytes(files, dirs=["dogImages/", "dogImages/train/"]))
    assert [entry.name for entry in entries if not entry.is_dir] == list(files)
    assert [entry.name for entry in entries if entry.is_dir] == ["dogImages/", "dogImages/train/"]
    for entry in entries:
        start, end = entry_span(entry)
        assert start == entry.header_offset < end == entry.data_limit


def test_zip64_archives_are_read() -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("train/a/x.jpg", "w", force_zip64=True) as member,
    ):
        member.write(b"\xff\xd8\xff" + b"j" * 100)
    entries = entries_of(buffer.getvalue())
    assert entries[0].name == "train/a/x.jpg" and entries[0].file_size == 103


def test_reading_the_directory_touches_only_the_tail_of_a_big_archive() -> None:
    noise = random.Random(0)
    big = zip_bytes({f"train/a/{index}.jpg": noise.randbytes(50_000) for index in range(20)})
    file, calls = ranged(big, block_bytes=4096)
    read_central_directory(file, max_entries=100)
    assert len(big) > 1_000_000 and file.bytes_fetched < len(big) / 10
    assert all(start >= len(big) - 70_000 for start, _ in calls)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is not a zip at all" * 10, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200],
    ids=["empty", "text", "png"],
)
def test_not_a_zip_is_rejected(data: bytes) -> None:
    with pytest.raises(DatasetValidationError, match="not a zip"):
        entries_of(data)


def test_too_many_entries_are_rejected_before_the_directory_is_parsed() -> None:
    data = zip_bytes({f"train/a/{index}.jpg": b"x" for index in range(11)})
    file, _ = ranged(data)
    with pytest.raises(DatasetValidationError, match="11 entries; the limit is 10"):
        read_central_directory(file, max_entries=10)


def test_symlink_entries_are_rejected() -> None:
    entries = [
        *good_raw_entries(),
        RawEntry("train/001.Affenpinscher/link.jpg", b"/etc/passwd", external_attr=0o120777 << 16),
    ]
    with pytest.raises(DatasetValidationError, match=r"link\.jpg.*symbolic link"):
        entries_of(raw_zip(entries))


def test_device_files_are_rejected() -> None:
    entries = [RawEntry("train/a/dev.jpg", b"", external_attr=0o020644 << 16)]
    with pytest.raises(DatasetValidationError, match="special file"):
        entries_of(raw_zip(entries))


@pytest.mark.parametrize("flags,method", [(0x1, 0), (0x41, 0), (0x0, 99)], ids=["zipcrypto", "strong", "aes"])
def test_encrypted_entries_are_rejected(flags: int, method: int) -> None:
    entries = [
        *good_raw_entries(),
        RawEntry("train/002.Afghan_hound/secret.jpg", b"\x00" * 40, flags=flags, method=method),
    ]
    with pytest.raises(DatasetValidationError, match=r"secret\.jpg.*encrypted"):
        entries_of(raw_zip(entries))


def test_encryption_flag_only_in_the_local_header_is_caught_when_reading() -> None:
    data = bytearray(raw_zip([RawEntry("train/a/x.jpg", b"abc")]))
    data[6] |= 0x1  # local header flag bits
    file, _ = ranged(bytes(data))
    (entry,) = read_central_directory(file, max_entries=10).entries
    with pytest.raises(DatasetValidationError, match="encrypted"):
        read_entry(file, entry, LIMITS, limit_name="MAX_ENTRY_BYTES")


@pytest.mark.parametrize("compression,label", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")])
def test_unsupported_compression_methods_are_rejected(compression: int, label: str) -> None:
    data = zip_bytes({"train/a/x.jpg": b"\xff\xd8\xff" * 10}, compression=compression)
    with pytest.raises(DatasetValidationError, match=f"x.jpg.*{label}.*only stored"):
        entries_of(data)


def test_duplicate_names_are_rejected() -> None:
    entries = [RawEntry("train/a/x.jpg", b"one"), RawEntry("train/a/x.jpg", b"two")]
    with pytest.raises(DatasetValidationError, match="appears twice"):
        entries_of(raw_zip(entries))


def test_overlapping_entries_are_rejected() -> None:
    data = bytearray(raw_zip([RawEntry("train/a/x.jpg", b"A" * 100), RawEntry("train/a/y.jpg", b"B" * 100)]))
    central = data.rfind(b"PK\x01\x02")  # the second central record; point it at the first local header
    data[central + 42 : central + 46] = (0).to_bytes(4, "little")
    with pytest.raises(DatasetValidationError, match="overlaps"):
        entries_of(bytes(data))


def test_data_before_the_archive_is_rejected() -> None:
    with pytest.raises(DatasetValidationError, match="before or inside its central directory"):
        entries_of(b"MZ" + b"\x00" * 64 + raw_zip([RawEntry("train/a/x.jpg", b"abc")]))


def test_directory_entries_with_data_are_rejected() -> None:
    with pytest.raises(DatasetValidationError, match="carries data"):
        entries_of(raw_zip([RawEntry("train/a/", b"surprise")]))


# --- entry data ---


def read_only_entry(data: bytes, limits: InflateLimits = LIMITS) -> bytes:
    file, _ = ranged(data)
    (entry,) = read_central_directory(file, max_entries=10).entries
    return read_entry(file, entry, limits, limit_name="MAX_ENTRY_BYTES")


def test_stored_and_deflated_entries_read_back() -> None:
    content = b"\xff\xd8\xff" + bytes(range(256)) * 30
    assert read_only_entry(raw_zip([RawEntry("train/a/x.jpg", content)])) == content
    assert (
        read_only_entry(raw_zip([RawEntry("train/a/x.jpg", deflate(content), real=content, method=8)]))
        == content
    )


def test_a_bomb_with_a_lying_header_is_stopped_at_the_cap_by_real_bytes() -> None:
    bomb = b"\x00" * (8 * 1024 * 1024)
    entry = RawEntry("train/a/bomb.jpg", deflate(bomb), real=bomb, method=8, file_size=1000)
    limits = InflateLimits(max_bytes=1024 * 1024, max_ratio=10**9, ratio_floor_bytes=0)
    with pytest.raises(DatasetValidationError, match=r"bomb.jpg.*more than 1048576 bytes.*claims 1000"):
        read_only_entry(raw_zip([entry]), limits)


def test_a_highly_compressible_entry_is_stopped_by_its_ratio() -> None:
    bomb = b"\x00" * (4 * 1024 * 1024)
    entry = RawEntry("train/a/bomb.jpg", deflate(bomb), real=bomb, method=8)
    limits = InflateLimits(max_bytes=64 * 1024 * 1024, max_ratio=200, ratio_floor_bytes=1024 * 1024)
    with pytest.raises(DatasetValidationError, match=r"bomb.jpg' inflates \d+x.*limit is 200x"):
        read_only_entry(raw_zip([entry]), limits)


def test_an_entry_that_inflates_to_less_than_claimed_is_rejected() -> None:
    content = b"\xff\xd8\xff" * 50
    with pytest.raises(DatasetValidationError, match="inflates to 150 bytes but its header claims 9999"):
        read_only_entry(
            raw_zip([RawEntry("train/a/x.jpg", deflate(content), real=content, method=8, file_size=9999)])
        )


def test_a_crc_mismatch_is_rejected() -> None:
    with pytest.raises(DatasetValidationError, match="CRC-32"):
        read_only_entry(raw_zip([RawEntry("train/a/x.jpg", b"abc", crc=12345)]))


def test_corrupt_deflate_data_is_rejected() -> None:
    with pytest.raises(DatasetValidationError, match="corrupt compressed data"):
        read_only_entry(raw_zip([RawEntry("train/a/x.jpg", b"\xff" * 50, real=b"a" * 10, method=8)]))


def test_a_truncated_deflate_stream_is_rejected() -> None:
    content = bytes(range(256)) * 50
    stream = deflate(content)[:-20]
    with pytest.raises(DatasetValidationError, match="ends before its compressed stream"):
        read_only_entry(raw_zip([RawEntry("train/a/x.jpg", stream, real=content, method=8)]))


def test_a_local_name_that_differs_from_the_directory_is_rejected() -> None:
    with pytest.raises(DatasetValidationError, match="different name in its local header"):
        read_only_entry(raw_zip([RawEntry("train/a/x.jpg", b"abc", local_name="../../../xx.jpg")]))
