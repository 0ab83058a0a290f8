"""Dataset validation: errors name the bad file, empty class or mismatched classes; caching is exact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import data
import presets
from contracts import datasets

pytestmark = pytest.mark.unit


def _write_split(root: Path, classes=("001.cat", "002.dog"), per_class=2, size=12) -> Path:
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            color = (40 * label + 10 * index, 100, 200 - 30 * label)
            Image.new("RGB", (size, size + index), color).save(folder / f"{name}_{index}.jpg")
    return root


def test_scan_sorts_classes_and_skips_hidden_and_non_images(tmp_path):
    root = _write_split(tmp_path / "train")
    (root / "001.cat" / ".DS_Store").write_bytes(b"\0\1")
    (root / "001.cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    split = data.scan_split(root, "train")
    assert split.classes == ["001.cat", "002.dog"]
    assert [label for _, label in split.samples] == [0, 0, 1, 1]


def test_empty_class_is_named(tmp_path):
    root = _write_split(tmp_path / "valid")
    (root / "003.fox").mkdir()
    with pytest.raises(data.EmptyClassError, match=r"003\.fox.*valid"):
        data.scan_split(root, "valid")


def test_missing_split_is_named(tmp_path):
    with pytest.raises(data.MissingSplitError, match="test split"):
        data.scan_split(tmp_path / "nope", "test")


def test_class_mismatch_lists_missing_and_extra(tmp_path):
    train = data.scan_split(_write_split(tmp_path / "train", ("001.cat", "002.dog")), "train")
    test = data.scan_split(_write_split(tmp_path / "test", ("001.cat", "003.fox")), "test")
    with pytest.raises(data.ClassMismatchError) as error:
        data.check_same_classes([train, test])
    assert "002.dog" in str(error.value) and "003.fox" in str(error.value) and "test" in str(error.value)


@pytest.mark.parametrize("payload", [b"", b"this is not a jpeg at all"])
def test_unreadable_image_is_named_when_inspected(tmp_path, payload):
    root = _write_split(tmp_path / "train")
    bad = root / "002.dog" / "broken.jpg"
    bad.write_bytes(payload)
    split = data.scan_split(root, "train")
    with pytest.raises(data.UnreadableImageError, match=r"broken\.jpg"):
        data.inspect_split(split)


def test_truncated_image_is_named_when_decoded(tmp_path):
    root = _write_split(tmp_path / "train")
    truncated = root / "001.cat" / "truncated.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-1500])
    split = data.scan_split(root, "train")
    data.inspect_split(split)  # the header is intact
    with pytest.raises(data.UnreadableImageError, match=r"truncated\.jpg"):
        data.ImageFolderDataset(split, presets.eval_transform(32), cache=True)


def test_dataset_hash_changes_with_content_and_is_stable(tmp_path):
    root = _write_split(tmp_path / "train")

    def digest():
        split = data.scan_split(root, "train")
        return datasets.dataset_hash(data.inspect_split(split)), split

    first, split = digest()
    assert split.sizes == [(12, 12), (12, 13), (12, 12), (12, 13)]
    assert digest()[0] == first
    Image.new("RGB", (12, 12), (0, 0, 0)).save(root / "001.cat" / "001.cat_0.jpg")
    assert digest()[0] != first


def test_cached_and_lazy_items_are_identical(tmp_path):
    split = data.scan_split(_write_split(tmp_path / "valid"), "valid")
    transform = presets.eval_transform(16)
    lazy = data.ImageFolderDataset(split, transform, cache=False)
    cached = data.ImageFolderDataset(split, transform, cache=True)
    precomputed = data.precompute(cached, 16)
    assert isinstance(precomputed, data.TensorDataset)
    for index in range(len(lazy)):
        image, label = lazy[index]
        assert image.shape == (3, 16, 16)
        assert torch.equal(image, cached[index][0]) and torch.equal(image, precomputed[index][0])
        assert label == cached[index][1] == precomputed[index][1]


def test_cache_decision(tmp_path):
    split = data.scan_split(_write_split(tmp_path / "train"), "train")
    data.inspect_split(split)
    assert data.decoded_bytes([split]) == 3 * 12 * (12 + 13 + 12 + 13)
    assert data.should_cache("auto", [split])
    assert not data.should_cache("auto", [split], budget=10)
    assert data.should_cache("on", [split], budget=10)
    assert not data.should_cache("off", [split])
    assert data.median_short_side(split) == 12
