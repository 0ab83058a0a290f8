"""The digits sample: dog-breed layout, stratified splits, and the same bytes on every run."""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from stepsage import sample

pytestmark = pytest.mark.unit


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("sample")
    first = sample.build_sample_dataset(base / "one" / "digits", size=16, zip_path=base / "one.zip")
    second = sample.build_sample_dataset(base / "two" / "digits", size=16, zip_path=base / "two.zip")
    return base, first, second


def test_layout_counts_and_stratification(built):
    base, summary, _ = built
    root = base / "one" / "digits"
    assert summary["classes"][0] == "001.zero" and summary["classes"][-1] == "010.nine"
    assert sum(summary["splits"].values()) == 1797
    assert summary["splits"]["train"] > 1200 and 250 < summary["splits"]["valid"] < 290
    counts = {}
    for split in ("train", "valid", "test"):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == summary["classes"]
        counts[split] = [len(list((root / split / name).glob("*.jpg"))) for name in folders]
        assert sum(counts[split]) == summary["splits"][split]
    for index in range(10):
        total = sum(counts[split][index] for split in counts)
        # Stratified: every class gives each split its share, to within rounding.
        for split, fraction in sample.SPLIT_FRACTIONS.items():
            assert abs(counts[split][index] - fraction * total) <= 1, (split, index)
    files = {p.name for p in root.rglob("*.jpg")}
    assert len(files) == 1797  # no image lands in two splits
    with Image.open(next((root / "test" / "004.three").glob("three_*.jpg"))) as image:
        assert image.format == "JPEG" and image.size == (16, 16) and image.mode == "RGB"


def test_same_bytes_on_every_run(built):
    base, _, _ = built
    assert _tree_hash(base / "one" / "digits") == _tree_hash(base / "two" / "digits")
    assert (base / "one.zip").read_bytes() == (base / "two.zip").read_bytes()


def test_zip_has_one_top_level_folder(built):
    base, summary, _ = built
    with zipfile.ZipFile(base / "one.zip") as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"digits"}
    assert {name.split("/")[1] for name in names} == {"train", "valid", "test"}
    assert len(names) == 1797
    assert summary["zip"] == str(base / "one.zip")


def test_size_changes_the_images(tmp_path):
    summary = sample.build_sample_dataset(tmp_path / "d", size=24)
    first = next((tmp_path / "d" / "train" / "001.zero").glob("*.jpg"))
    with Image.open(first) as image:
        assert image.size == (24, 24)
    assert summary["size"] == 24
    with pytest.raises(sample.SampleError, match="at least 8"):
        sample.build_sample_dataset(tmp_path / "e", size=4)


def test_cli_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sample.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sample", "--out", str(tmp_path / "digits"), "--size", "8"])
    assert args.func(args) == 0
    assert "10 classes" in capsys.readouterr().out
    assert (tmp_path / "digits" / "valid" / "010.nine").is_dir()
