"""stage_data's pure decisions: names, layout, classes, split, capacity, hash, manifest, images, the event."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest_stage_data import image_bytes, load_event, png_claiming
from pydantic import ValidationError

pytestmark = pytest.mark.unit

# The Lambda's flat modules, importable once conftest_stage_data has put its folder on sys.path.
from dataset_errors import DatasetTooLargeError, DatasetValidationError  # noqa: E402
from image_check import inspect_image, sniff_format  # noqa: E402
from stage_request import StageDataEvent  # noqa: E402
from staging import (  # noqa: E402
    ManifestContext,
    SplitSettings,
    StagedImage,
    StagingLimits,
    Workload,
    build_manifest,
    check_capacity,
    dataset_hash,
    estimate_seconds,
    junk_reason,
    normalize_entry_name,
    plan_channels,
    plan_layout,
)


def tree(*names: str) -> list[tuple[str, bool]]:
    return [(name, name.endswith("/")) for name in names]


def images(split: str, label: str, count: int, top: str = "") -> list[str]:
    return [f"{top}{split}/{label}/img_{index:03d}.jpg" for index in range(count)]


# --- names ---


def test_normal_names_split_into_parts() -> None:
    assert normalize_entry_name("dogImages/train/001.Affenpinscher/a.jpg") == (
        "dogImages",
        "train",
        "001.Affenpinscher",
        "a.jpg",
    )
    assert normalize_entry_name("./train//a/") == ("train", "a")


@pytest.mark.parametrize(
    "name,reason",
    [
        ("../evil.jpg", "zip-slip"),
        ("train/a/../../../etc/passwd", "zip-slip"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/evil.jpg", "absolute"),
        ("train\\a\\x.jpg", "backslashes"),
        ("train/a/x\x00.jpg", "control characters"),
        ("train/a/" + "x" * 300 + ".jpg", "longer than 255"),
    ],
)
def test_unsafe_names_are_rejected(name: str, reason: str) -> None:
    with pytest.raises(DatasetValidationError, match=reason) as caught:
        normalize_entry_name(name)
    assert caught.value.entry == name


@pytest.mark.parametrize(
    "parts,reason",
    [
        (("__MACOSX", "train", "._a.jpg"), "macOS resource fork folder"),
        (("train", "a", ".DS_Store"), "macOS folder metadata"),
        (("train", "a", "Thumbs.db"), "Windows thumbnail cache"),
        (("train", "a", "._x.jpg"), "macOS AppleDouble file"),
        (("train", ".hidden", "x.jpg"), "hidden file"),
        (("train", "a", "x.jpg"), None),
    ],
)
def test_junk_is_recognised(parts: tuple[str, ...], reason: str | None) -> None:
    assert junk_reason(parts) == reason


# --- layout ---


def test_layout_with_a_top_level_folder_and_junk() -> None:
    names = [
        "dogImages/",
        "dogImages/train/",
        *images("train", "001.A", 3, "dogImages/"),
        *images("train", "002.B", 3, "dogImages/"),
        *images("valid", "001.A", 1, "dogImages/"),
        *images("valid", "002.B", 1, "dogImages/"),
        "__MACOSX/dogImages/train/._x.jpg",
        "dogImages/.DS_Store",
    ]
    plan = plan_layout(tree(*names))
    assert plan.top_level == "dogImages"
    assert plan.labels == ("001.A", "002.B")
    assert plan.present_splits == ("train", "valid")
    assert len(plan.images) == 8
    assert {(entry.path, entry.reason) for entry in plan.ignored} == {
        ("__MACOSX/dogImages/train/._x.jpg", "macOS resource fork folder"),
        ("dogImages/.DS_Store", "macOS folder metadata"),
    }
    first = plan.images[0]
    assert (first.split, first.label, first.filename) == ("train", "001.A", "img_000.jpg")


def test_layout_without_a_top_level_folder() -> None:
    plan = plan_layout(tree(*images("train", "a", 2), *images("train", "b", 2)))
    assert plan.top_level is None and plan.labels == ("a", "b") and plan.present_splits == ("train",)


@pytest.mark.parametrize(
    "names,message",
    [
        (images("valid", "a", 2), "no train/ folder"),
        (["data/train/a/x.jpg", "other/train/a/y.jpg"], "outside train/, valid/ and test/"),
        (["top/inner/train/a/x.jpg"], "outside train/"),
        (["train/x.jpg"], "wrong depth"),
        (["train/a/b/x.jpg"], "wrong depth"),
        (["train/a/b/"], "nested too deep"),
        (["train/a/notes.txt"], "train/a/notes.txt' is not an image"),
        (["notes.txt", *images("train", "a", 2), *images("train", "b", 2)], "notes.txt' is outside"),
        (["train/"], "train/ has no class folders"),
        ([*images("train", "a", 2), "train/b/"], "class 'b' in train/ has no images"),
    ],
)
def test_wrong_layouts_are_rejected_naming_the_entry(names: list[str], message: str) -> None:
    with pytest.raises(DatasetValidationError, match=message):
        plan_layout(tree(*names))


def test_mismatched_classes_between_splits_are_rejected() -> None:
    names = [
        *images("train", "a", 2),
        *images("train", "b", 2),
        *images("test", "a", 1),
        *images("test", "c", 1),
    ]
    with pytest.raises(DatasetValidationError, match=r"missing from test/: \['b'\]; only in test/: \['c'\]"):
        plan_layout(tree(*names))


def test_an_empty_class_in_valid_is_rejected() -> None:
    names = [*images("train", "a", 2), *images("train", "b", 2), *images("valid", "a", 1), "valid/b/"]
    with pytest.raises(DatasetValidationError, match="class 'b' in valid/ has no images"):
        plan_layout(tree(*names))


def test_unsafe_names_are_rejected_even_among_junk() -> None:
    with pytest.raises(DatasetValidationError, match="zip-slip"):
        plan_layout(tree(*images("train", "a", 2), "__MACOSX/../../evil"))


# --- split ---


def test_split_carves_valid_and_test_per_class_deterministically() -> None:
    plan = plan_layout(tree(*images("train", "a", 20), *images("train", "b", 10)))
    channels = plan_channels(plan, SplitSettings(valid_fraction=0.1, test_fraction=0.2, seed=7))
    assert channels == plan_channels(plan, SplitSettings(valid_fraction=0.1, test_fraction=0.2, seed=7))
    per_class = Counter((name.split("/")[1], channel) for name, channel in channels.items())
    assert per_class == {
        ("a", "train"): 14, ("a", "valid"): 2, ("a", "test"): 4,
        ("b", "train"): 7, ("b", "valid"): 1, ("b", "test"): 2,
    }  # fmt: skip
    other_seed = plan_channels(plan, SplitSettings(valid_fraction=0.1, test_fraction=0.2, seed=8))
    assert other_seed != channels


def test_split_keeps_given_channels_and_carves_only_the_missing_one() -> None:
    plan = plan_layout(tree(*images("train", "a", 10), *images("valid", "a", 3), *images("train", "b", 10),
                            *images("valid", "b", 3)))  # fmt: skip
    channels = plan_channels(plan, SplitSettings(valid_fraction=0.1, test_fraction=0.1))
    assert all(channels[name] == "valid" for name in images("valid", "a", 3))
    assert Counter(channels[name] for name in images("train", "a", 10)) == {"train": 9, "test": 1}


def test_split_with_every_channel_present_changes_nothing() -> None:
    names = [
        *(name for label in ("a", "b") for name in images("train", label, 3)),
        *(name for label in ("a", "b") for name in images("valid", label, 1)),
        *(name for label in ("a", "b") for name in images("test", label, 1)),
    ]
    channels = plan_channels(plan_layout(tree(*names)), SplitSettings())
    assert channels == {name: name.split("/")[0] for name in names}


def test_a_class_too_small_to_carve_is_rejected() -> None:
    plan = plan_layout(tree(*images("train", "a", 10), *images("train", "tiny", 2)))
    with pytest.raises(DatasetValidationError, match="class 'tiny' has 2 images in train/; at least 3"):
        plan_channels(plan, SplitSettings())


# --- limits and capacity ---


def test_limits_and_split_settings_come_from_the_environment() -> None:
    assert StagingLimits.from_env({}) == StagingLimits()
    limits = StagingLimits.from_env(
        {"MAX_ENTRIES": "10", "MAX_ENTRY_BYTES": "2048", "MAX_TOTAL_BYTES": "4096"}
    )
    assert (limits.max_entries, limits.max_entry_bytes, limits.max_total_bytes) == (10, 2048, 4096)
    split = SplitSettings.from_env({"VALID_FRACTION": "0.2", "TEST_FRACTION": "0.15", "SPLIT_SEED": "3"})
    assert split == SplitSettings(0.2, 0.15, 3)


@pytest.mark.parametrize(
    "env",
    [{"MAX_ENTRIES": "0"}, {"MAX_IMAGE_PIXELS": "500000000"}, {"MAX_COMPRESSION_RATIO": "1"}],
)
def test_bad_limits_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        StagingLimits.from_env(env)


@pytest.mark.parametrize("env", [{"VALID_FRACTION": "0"}, {"VALID_FRACTION": "0.6", "TEST_FRACTION": "0.5"}])
def test_bad_split_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        SplitSettings.from_env(env)


def test_the_dog_dataset_fits_the_default_capacity() -> None:
    dogs = Workload("zip", images=8351, image_bytes=1_130_000_000, source_bytes=1_100_000_000)
    assert estimate_seconds(dogs) < 300
    check_capacity(dogs, StagingLimits(), seconds_left=900, tmp_free_bytes=4 * 1024**3)


def test_capacity_refuses_more_bytes_than_the_total_cap() -> None:
    with pytest.raises(DatasetTooLargeError, match=r"4.00 GB .* at most 3.22 GB .*MAX_TOTAL_BYTES"):
        check_capacity(Workload("zip", 10, 4_000_000_000, 4_000_000_000), StagingLimits(), seconds_left=900,
                       tmp_free_bytes=None)  # fmt: skip


def test_capacity_refuses_a_zip_larger_than_free_tmp_and_suggests_a_folder() -> None:
    with pytest.raises(DatasetTooLargeError, match=r"only 0\.54 GB .*is free.*EphemeralStorage.*_READY"):
        check_capacity(Workload("zip", 10, 1_000_000_000, 1_000_000_000), StagingLimits(), seconds_left=900,
                       tmp_free_bytes=536_870_912)  # fmt: skip
    check_capacity(Workload("folder", 10, 1_000_000_000, 1_000_000_000), StagingLimits(), seconds_left=900,
                   tmp_free_bytes=None)  # fmt: skip


def test_capacity_refuses_what_cannot_finish_in_time() -> None:
    with pytest.raises(
        DatasetTooLargeError, match=r"50000 images .* estimated at \d+ s, but the function has 300 s"
    ):
        check_capacity(
            Workload("zip", 50_000, 10**9, 10**9), StagingLimits(), seconds_left=300, tmp_free_bytes=None
        )


# --- hash and manifest ---


def test_dataset_hash_ignores_order_and_sees_content_and_paths() -> None:
    files = [("train/a/x.jpg", "11"), ("valid/a/y.jpg", "22")]
    assert dataset_hash(files) == dataset_hash(reversed(files))
    assert dataset_hash(files) != dataset_hash([("train/a/x.jpg", "11"), ("valid/a/y.jpg", "23")])
    assert dataset_hash(files) != dataset_hash([("train/a/x.jpg", "11"), ("test/a/y.jpg", "22")])


def test_manifest_lists_every_file_with_class_channel_size_and_sha() -> None:
    staged = [
        StagedImage("valid/a/y.jpg", "train/a/y.jpg", "a", "valid", 5, "bb", "JPEG", 8, 8),
        StagedImage("train/a/x.jpg", "train/a/x.jpg", "a", "train", 4, "aa", "PNG", 8, 8),
    ]
    context = ManifestContext(
        "dogs", "exec1", {"kind": "zip"}, StagingLimits(), SplitSettings(), None, ("valid",)
    )
    manifest = build_manifest(context, ["a"], staged)
    assert [file["path"] for file in manifest["files"]] == ["train/a/x.jpg", "valid/a/y.jpg"]
    assert manifest["files"][1] == {
        "path": "valid/a/y.jpg", "source": "train/a/y.jpg", "label": "a", "channel": "valid", "size": 5,
        "sha256": "bb", "format": "JPEG", "width": 8, "height": 8,
    }  # fmt: skip
    assert manifest["counts"] == {"train": 1, "valid": 1, "test": 0}
    assert manifest["split"]["created"] is True and manifest["split"]["carved_channels"] == ["valid"]
    assert manifest["dataset_hash"] == dataset_hash([("train/a/x.jpg", "aa"), ("valid/a/y.jpg", "bb")])


# --- images ---


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM"])
def test_real_images_pass_and_report_their_format(fmt: str) -> None:
    data = image_bytes(size=(12, 7), fmt=fmt)
    assert sniff_format(data[:16]) == fmt
    info = inspect_image(data, "train/a/x", max_pixels=1000)
    assert (info.format, info.width, info.height) == (fmt, 12, 7)


def test_a_fake_jpg_is_rejected_by_its_magic_bytes() -> None:
    with pytest.raises(DatasetValidationError, match=r"train/a/fake.jpg is not an image \(unrecognised"):
        inspect_image(b"<html>definitely not a jpeg</html>", "train/a/fake.jpg", max_pixels=10**6)


def test_a_jpeg_header_on_garbage_is_rejected_by_decoding() -> None:
    with pytest.raises(DatasetValidationError, match="does not decode as JPEG"):
        inspect_image(b"\xff\xd8\xff\xe0" + b"garbage" * 50, "train/a/x.jpg", max_pixels=10**6)


def test_a_truncated_jpeg_is_rejected() -> None:
    data = image_bytes(size=(64, 64))
    with pytest.raises(DatasetValidationError, match="does not decode as JPEG"):
        inspect_image(data[: len(data) // 2], "train/a/x.jpg", max_pixels=10**6)


def test_a_png_claiming_100k_by_100k_pixels_is_a_bomb() -> None:
    with pytest.raises(DatasetValidationError, match=r"hard limit .*decompression bomb"):
        inspect_image(png_claiming(100_000, 100_000), "train/a/bomb.png", max_pixels=25_000_000)


def test_a_png_over_our_pixel_limit_is_refused_from_its_header() -> None:
    with pytest.raises(DatasetValidationError, match=r"6000x6000 = 36000000 pixels; the limit is 25000000"):
        inspect_image(png_claiming(6000, 6000), "train/a/big.png", max_pixels=25_000_000)


# --- the event ---


def test_sample_events_parse() -> None:
    archive = StageDataEvent.model_validate(load_event("stage_data"))
    folder = StageDataEvent.model_validate(load_event("stage_data_folder"))
    assert (archive.kind, folder.kind) == ("zip", "folder")
    assert folder.folder_prefix == "datasets/dogs/"


@pytest.mark.parametrize(
    "change",
    [
        {"key": "datasets/other.zip"},
        {"key": "elsewhere/dogs.zip"},
        {"dataset_name": "../dogs", "key": "datasets/../dogs.zip"},
        {"execution_name": "a/b"},
    ],
)
def test_events_that_do_not_name_one_dataset_are_refused(change: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        StageDataEvent.model_validate({**load_event("stage_data"), **change})
