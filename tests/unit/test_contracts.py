"""contracts/: what an image is, what a dataset is called, and its hash, decided once for every unit."""

from __future__ import annotations

import hashlib
import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts import datasets, images, limits

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient(size: tuple[int, int] = (24, 16)) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [(x * 10 % 256, y * 15 % 256, (x + y) * 5 % 256) for y in range(height) for x in range(width)]
    )
    return image


# ---- recognising and sizing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"quality": 70}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("GIF", {}),
        ("PPM", {}),
    ],
)
@pytest.mark.parametrize("size", [(1, 1), (37, 5), (300, 201)])
def test_every_format_is_sniffed_and_sized_from_its_header_like_pillow(
    fmt: str, options: dict, size: tuple[int, int]
) -> None:
    data = _encode(_gradient(size), fmt, **options)
    info = images.inspect(data)
    assert info.format.name == fmt
    assert (info.width, info.height) == size
    assert images.decode(data).size == size


def test_big_endian_tiff_and_grayscale_pnm_headers() -> None:
    tiff = _encode(Image.new("L", (70, 9)), "TIFF")
    swapped = b"MM\x00*" + tiff[4:]  # not a valid big-endian file, but its header must not be misread
    assert images.sniff(swapped) is images.TIFF
    pgm = b"P5\n# a comment\n 12  7\n255\n" + b"\x00" * 84
    assert (images.inspect(pgm).width, images.inspect(pgm).height) == (12, 7)
    assert images.decode(pgm).size == (12, 7)


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC/HEIF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "AVIF"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00", "JPEG 2000"),
        (b"8BPS\x00\x01" + b"\x00" * 20, "Photoshop PSD"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
)
def test_known_formats_no_unit_decodes_are_named(head: bytes, name: str) -> None:
    with pytest.raises(images.UnsupportedFormat, match=name):
        images.inspect(head)


def test_a_real_ico_is_named_not_called_garbage() -> None:
    with pytest.raises(images.UnsupportedFormat, match="ICO"):
        images.decode(_encode(_gradient((16, 16)), "ICO"))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", images.EmptyImage),
        (b"hello, not an image", images.NotAnImage),
        (b"\xff\xd8\xff\xda\x00\x08", images.CorruptImage),
        (b"II*\x00\xff\xff\xff\x7f", images.CorruptImage),  # first directory beyond the end
        (b"P6\n", images.CorruptImage),
    ],
)
def test_bad_bytes_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        images.decode(data)


def test_pixels_are_refused_from_the_header_before_decoding() -> None:
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + b"\x00" * 4
    with pytest.raises(images.TooManyPixels, match="10000x10000"):
        images.decode(bomb, max_pixels=limits.MAX_IMAGE_PIXELS)
    with pytest.raises(images.TooManyPixels):
        images.decode(_encode(_gradient((40, 30)), "PNG"), max_pixels=1000)


# ---- one careful decode ------------------------------------------------------------------------------


def _rgb(data: bytes) -> np.ndarray:
    image = images.decode(data)
    assert image.mode == "RGB"
    return np.asarray(image)


def test_16_bit_grayscale_keeps_its_gradient_instead_of_turning_white() -> None:
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    for fmt in ("PNG", "TIFF"):
        pixels = _rgb(_encode(Image.fromarray(ramp), fmt))
        assert pixels.min() == 0 and pixels.max() == 255
        assert 120 < pixels.mean() < 135  # a ramp, not a flat square
        assert np.all(np.diff(pixels[0, :, 0].astype(int)) >= 0)


def test_floating_point_images_are_rescaled() -> None:
    unit = np.linspace(0, 1, 32 * 4, dtype=np.float32).reshape(4, 32)
    pixels = _rgb(_encode(Image.fromarray(unit, mode="F"), "TIFF"))
    assert pixels.min() == 0 and pixels.max() == 255
    wide = (unit * 4000 - 1000).astype(np.float32)
    assert _rgb(_encode(Image.fromarray(wide, mode="F"), "TIFF")).std() > 50


def test_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] + [200, 0, 0] * 255)
    palette.paste(1, (0, 0, 5, 10))
    pixels = _rgb(_encode(palette, "PNG", transparency=0))
    assert tuple(pixels[0, 0]) == (200, 0, 0) and tuple(pixels[0, 9]) == (255, 255, 255)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    assert tuple(_rgb(_encode(rgba, "PNG"))[0, 0]) == (255, 255, 255)
    gray_alpha = Image.new("LA", (4, 4), (0, 255))
    assert tuple(_rgb(_encode(gray_alpha, "PNG"))[0, 0]) == (0, 0, 0)


def test_cmyk_and_grayscale_become_the_right_rgb() -> None:
    red = _rgb(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100))
    assert red[..., 0].mean() > 240 and red[..., 1].mean() < 15
    assert tuple(_rgb(_encode(Image.new("L", (3, 3), 77), "PNG"))[1, 1]) == (77, 77, 77)
    assert tuple(_rgb(_encode(Image.new("1", (3, 3), 1), "PPM"))[1, 1]) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 20, 20))  # blue on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: blue ends up on top
    upright = images.decode(_encode(stored, "JPEG", quality=100, exif=exif))
    assert upright.size == (20, 40)
    top, bottom = np.asarray(upright)[2, 10], np.asarray(upright)[37, 10]
    assert top[2] > 200 and bottom[0] > 200


def test_a_damaged_exif_block_does_not_refuse_good_pixels() -> None:
    data = _encode(_gradient(), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert images.decode(data).size == (24, 16)


# ---- names and media types ---------------------------------------------------------------------------


def test_filenames_and_media_types_map_to_the_same_formats() -> None:
    for fmt in images.FORMATS:
        for extension in fmt.extensions:
            assert images.format_for_filename(f"a/b{extension.upper()}") is fmt
            assert images.media_type_for_filename(f"x{extension}") == fmt.media_type
        assert images.format_for_media_type(fmt.media_type) is fmt
        assert images.is_image_media_type(fmt.media_type)
    assert images.format_for_filename("notes.txt") is None
    assert images.unsupported_format_for_filename("IMG_0001.HEIC") == "HEIC/HEIF"
    assert images.endpoint_media_type(images.JPEG) == "image/jpeg"
    assert images.endpoint_media_type(images.TIFF) == "application/x-image"


@pytest.mark.parametrize("name", ["a", "dogImages", "my_data.v2", "x" * 100, "0-9", "Cat"])
def test_dataset_names_every_unit_accepts(name: str) -> None:
    assert datasets.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 101, "-lead", ".hidden", "my data", "a/b", "日本語", "a\x00b"])
def test_dataset_names_no_unit_accepts(name: str) -> None:
    assert not datasets.is_valid_name(name)
    with pytest.raises(datasets.InvalidDatasetName, match="letters, digits"):
        datasets.check_name(name)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("datasets/digits.zip", "digits"),
        ("datasets/dogImages/_READY", "dogImages"),
        ("datasets/my data v2.zip", "my data v2"),  # read as written; StageData refuses it by the rule
        ("datasets/nested/deeper.zip", None),
        ("datasets/.zip", None),
        ("other/digits.zip", None),
        ("datasets/digits/_READY.txt", None),
    ],
)
def test_dataset_keys(key: str, name: str | None) -> None:
    assert datasets.name_from_key(key) == name
    if name is not None and datasets.is_valid_name(name):
        assert key in (datasets.archive_key(name), datasets.ready_key(name))


# ---- the dataset hash: staging's manifest and training's channels agree ---------------------------------


def test_training_hashes_its_channels_exactly_as_staging_hashes_the_manifest(tmp_path: Path) -> None:
    """The staged folders a training job gets (one per channel), hashed by train.py's data scan, give the
    manifest's dataset_hash, computed by staging's code from the same files."""
    sys.path.insert(0, str(ROOT / "training_code"))
    sys.path.insert(0, str(ROOT / "lambdas" / "stage_data"))
    sys.path.insert(0, str(ROOT / "lambdas" / "common"))
    try:
        import staging

        import data
    finally:
        del sys.path[:3]
    staged: list[tuple[str, str]] = []
    for split in datasets.SPLITS:
        for label in ("001.cat", "002.dog"):
            for index in range(2):
                body = _encode(_gradient((8 + index, 8)), "PNG")
                path = datasets.staged_path(split, label, f"{label}_{index}.png")
                (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / path).write_bytes(body)
                staged.append((path, hashlib.sha256(body).hexdigest()))
    manifest_hash = staging.dataset_hash(staged)
    files = []
    for split in datasets.SPLITS:
        files += data.inspect_split(data.scan_split(tmp_path / split, split))
    assert datasets.dataset_hash(files) == manifest_hash
    channel_files = [
        entry for split in datasets.SPLITS for entry in datasets.channel_files(split, tmp_path / split)
    ]
    assert datasets.dataset_hash(channel_files) == manifest_hash
    (tmp_path / "test" / "001.cat" / "001.cat_0.png").write_bytes(_encode(_gradient((9, 9)), "PNG"))
    changed = [
        e for split in datasets.SPLITS for e in data.inspect_split(data.scan_split(tmp_path / split, split))
    ]
    assert datasets.dataset_hash(changed) != manifest_hash
