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


# ---- generated: every mode in every format that stores it keeps its information -------------------------


def _scene(size: tuple[int, int] = (32, 24), seed: int = 0) -> np.ndarray:
    """A deterministic non-uniform 8-bit RGB picture: gradients plus noise, so flattening shows."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    base = np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height - 2)], -1
    )
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def _stored(mode: str, rgb: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """(image in `mode`, the RGB the one decode must give for it)."""
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    if mode == "L":
        return Image.fromarray(gray), np.repeat(gray[..., None], 3, -1)
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257), np.repeat(gray[..., None], 3, -1)
    if mode == "F":
        return Image.fromarray(gray.astype(np.float32) / 255.0, mode="F"), np.repeat(gray[..., None], 3, -1)
    if mode == "RGBA":
        alpha = np.full(gray.shape, 255, np.uint8)
        alpha[:, : gray.shape[1] // 2] = 0  # the left half is transparent: white after the decode
        expected = rgb.copy()
        expected[:, : gray.shape[1] // 2] = 255
        return Image.fromarray(np.dstack([rgb, alpha])), expected
    if mode == "CMYK":
        image = Image.fromarray(rgb).convert("CMYK")
        return image, np.asarray(image.convert("RGB"))
    if mode == "P":
        paletted = Image.fromarray(rgb).quantize(colors=16)
        paletted.info["transparency"] = 0
        indices = np.asarray(paletted)
        palette = np.array(paletted.getpalette()[: 16 * 3], np.uint8).reshape(-1, 3)
        expected = palette[indices]
        expected[indices == 0] = 255  # the transparent index shows the white background
        return paletted, expected
    if mode == "1":
        bits = gray > 127
        return Image.fromarray(bits), np.repeat((bits * 255).astype(np.uint8)[..., None], 3, -1)
    raise AssertionError(mode)


# (format, mode, tolerance in mean absolute 8-bit error): lossy formats get room for their loss.
MODE_MATRIX = [
    ("PNG", "L", 0), ("TIFF", "L", 0), ("PPM", "L", 0), ("BMP", "L", 0), ("JPEG", "L", 6), ("WEBP", "L", 0),
    ("PNG", "I;16", 0), ("TIFF", "I;16", 0),
    ("TIFF", "F", 1),
    ("PNG", "RGBA", 0), ("TIFF", "RGBA", 0), ("WEBP", "RGBA", 0),
    ("JPEG", "CMYK", 6), ("TIFF", "CMYK", 0),
    ("PNG", "1", 0), ("TIFF", "1", 0), ("BMP", "1", 0), ("PPM", "1", 0),
    ("PNG", "P", 0), ("GIF", "P", 0),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "mode", "tolerance"), MODE_MATRIX)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_stored_mode_decodes_to_its_own_pixels(
    fmt: str, mode: str, tolerance: float, seed: int
) -> None:
    stored, expected = _stored(mode, _scene(seed=seed))
    options: dict[str, object] = (
        {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    )
    if mode == "P":
        options["transparency"] = 0
    decoded = _rgb(_encode(stored if fmt != "WEBP" or mode != "L" else stored.convert("RGB"), fmt, **options))
    error = np.abs(decoded.astype(int) - expected.astype(int)).mean()
    assert error <= tolerance + 0.5, f"{fmt}/{mode}: mean error {error:.1f}"
    assert decoded.std() > 20  # never a flat square


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_every_exif_orientation_comes_out_upright(orientation: int, fmt: str) -> None:
    upright = Image.fromarray(_scene((30, 18), seed=orientation))
    # What a camera stores for each orientation tag: the transform that the tag's display undoes.
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(inverse[orientation]) if orientation in inverse else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    options: dict[str, object] = (
        {"quality": 98} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    )
    decoded = images.decode(_encode(stored, fmt, exif=exif, **options))
    assert decoded.size == upright.size
    error = np.abs(np.asarray(decoded).astype(int) - np.asarray(upright).astype(int)).mean()
    assert error < 8, f"orientation {orientation} in {fmt}: mean error {error:.1f}"
