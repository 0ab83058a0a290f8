"""Hostile entry names by class, generated: control characters, Unicode forms, paths that land on one key,
desktop clutter, root documents, too few classes, the flat ImageFolder layout."""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter

import pytest

pytestmark = pytest.mark.unit

import conftest_stage_data  # noqa: E402,F401  (puts the Lambda's flat modules on sys.path)
from dataset_errors import DatasetValidationError  # noqa: E402
from staging import (  # noqa: E402
    ManifestContext,
    SplitSettings,
    StagingLimits,
    build_manifest,
    normalize_entry_name,
    plan_channels,
    plan_layout,
)

from contracts import junk  # noqa: E402

# Every control character (Unicode category Cc: C0, DEL, C1) and the line and paragraph separators.
REFUSED = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"] + ["\u2028", "\u2029"]
# Letters with combining marks that NFC composes: how macOS (NFD) and everyone else (NFC) differ.
MARKS = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u030c", "\u0327"]
DECOMPOSED = sorted(
    {
        base + mark
        for base in "aeiouyncszAEIOUYNCSZ"
        for mark in MARKS
        if len(unicodedata.normalize("NFC", base + mark)) == 1
    }
    | {unicodedata.normalize("NFD", text) for text in ("가", "한국", "が", "パン", "ǖ", "ḗ")}
)


def tree(*names: str) -> list[tuple[str, bool]]:
    return [(name, name.endswith("/")) for name in names]


def two_classes(top: str = "", a: str = "a", b: str = "b", n: int = 3, split: str = "train/") -> list[str]:
    return [f"{top}{split}{label}/img_{i}.jpg" for label in (a, b) for i in range(n)]


def test_the_generated_classes_are_wide() -> None:
    assert len(REFUSED) == 67 and len(DECOMPOSED) >= 60


@pytest.mark.parametrize("character", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_every_control_character_and_separator_is_refused_wherever_it_is(character: str) -> None:
    for name in (
        f"train/c{character}t/x.jpg",
        f"train/cat/x{character}.jpg",
        f"{character}top/train/cat/x.jpg",
        f"train/cat/{character}",
        f"__MACOSX/x{character}",  # even inside clutter: nothing with such a name is taken or written
    ):
        with pytest.raises(DatasetValidationError, match="control characters") as caught:
            plan_layout(tree(name, *two_classes()))
        assert caught.value.entry == name


def test_the_macos_folder_icon_is_clutter_despite_its_carriage_return() -> None:
    plan = plan_layout(tree(*two_classes(), "train/a/Icon\r", "Icon\r"))
    assert len(plan.ignored) == 2 and {e.reason for e in plan.ignored} == {"macOS custom folder icon"}


@pytest.mark.parametrize("decomposed", DECOMPOSED)
def test_names_are_nfc_so_nfd_and_nfc_spellings_are_one_class(decomposed: str) -> None:
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    # One upload typed on a Mac (NFD) and on Linux (NFC): one class, its name NFC.
    names = [f"train/{decomposed}/m_{i}.jpg" for i in range(3)] + [
        f"train/{composed}/l_{i}.jpg" for i in range(3)
    ]
    plan = plan_layout(tree(*names, *[f"train/z/{i}.jpg" for i in range(3)]))
    assert plan.labels == tuple(sorted((composed, "z")))
    assert all(image.label == unicodedata.normalize("NFC", image.label) for image in plan.images)
    assert normalize_entry_name(f"train/{decomposed}/{decomposed}.jpg") == (
        "train",
        composed,
        composed + ".jpg",
    )
    # The same file under both spellings lands on one staged key: refused, naming both entries.
    with pytest.raises(DatasetValidationError, match="same file once their paths are normalized") as caught:
        plan_layout(tree(f"train/{decomposed}/x.jpg", f"train/{composed}/x.jpg", *two_classes()))
    assert caught.value.entry == f"train/{composed}/x.jpg"


def test_case_is_kept_so_cat_and_Cat_are_two_classes() -> None:
    plan = plan_layout(tree(*two_classes(a="Cat", b="cat")))
    assert plan.labels == ("Cat", "cat") and len(plan.images) == 6


SPELLINGS = [
    "train/a/x.jpg",
    "train//a/x.jpg",
    "./train/a/x.jpg",
    "train/./a/x.jpg",
    "train/a//x.jpg",
    "train/a/./x.jpg",
    ".//train/a/x.jpg",
    "train/a/x.jpg",  # the very same name twice (a zip may list it twice)
]


@pytest.mark.parametrize("top", ["", "data/"])
@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(SPELLINGS, 2)))
def test_two_spellings_of_one_path_are_refused_not_silently_merged(first: str, second: str, top: str) -> None:
    names = [top + first, top + second, *two_classes(top)]
    with pytest.raises(DatasetValidationError, match=r"both would be staged as 'train/a/x\.jpg'"):
        plan_layout(tree(*names))


JUNK_FILES = [name for name in junk.JUNK_NAMES] + [
    "._img.jpg", ".~lock.report.odt#", "~$report.docx", ".Trash-1000", ".nfs0000000000a1", ".fuse_hidden0001",
    ".syncthing.x.jpg.tmp", ".sync.ffs_db", ".hidden.jpg",
]  # fmt: skip


@pytest.mark.parametrize("name", JUNK_FILES)
def test_clutter_is_skipped_and_counted_at_every_depth_and_in_any_case(name: str) -> None:
    spellings = {name, name.upper(), name.lower()} if name in junk.JUNK_NAMES else {name}
    extra = []
    for spelling in spellings:
        extra += [
            spelling,  # at the archive root
            f"data/{spelling}",  # at the top-level folder's root
            f"data/train/{spelling}",
            f"data/train/a/{spelling}",
            f"data/{spelling}/",  # as a folder, with content below it
            f"data/{spelling}/train/a/x.jpg",
            f"data/train/a/{spelling}/deep/y.png",
        ]
    plan = plan_layout(tree(*two_classes("data/"), *extra))
    assert plan.labels == ("a", "b") and len(plan.images) == 6 and plan.top_level == "data"
    assert sorted(e.path for e in plan.ignored) == sorted(extra)
    context = ManifestContext(
        "d", "e", {}, StagingLimits(), SplitSettings(), plan.top_level, (), plan.ignored
    )
    assert build_manifest(context, plan.labels, [])["ignored_count"] == len(extra)


@pytest.mark.parametrize(
    "document",
    ["README", "README.md", "readme.txt", "LICENSE", "LICENSE.txt", "License-CC-BY-4.0.txt", "LICENCE",
     "COPYING", "CITATION.cff", "NOTICE", "AUTHORS.md", "README (1).md"],
)  # fmt: skip
@pytest.mark.parametrize("top", ["", "data/"])
@pytest.mark.parametrize("layout", ["split", "flat"])
def test_a_readme_or_license_at_the_root_is_left_out_with_a_notice(
    document: str, top: str, layout: str
) -> None:
    split = "train/" if layout == "split" else ""
    names = [*two_classes(top, split=split), f"{top}{document}"]
    if top:
        names.append(document)  # beside the top-level folder too
    plan = plan_layout(tree(*names))
    assert plan.labels == ("a", "b") and plan.layout == layout
    assert {e.path for e in plan.ignored} == set(names) - set(two_classes(top, split=split))
    assert all("README, LICENSE" in e.reason for e in plan.ignored)


@pytest.mark.parametrize("stray", ["notes.txt", "labels.csv", "x.jpg", "data.json"])
def test_other_root_files_are_refused_with_a_message_naming_them(stray: str) -> None:
    with pytest.raises(DatasetValidationError, match=f"'{stray}' is outside train/, valid/ and test/"):
        plan_layout(tree(*two_classes(), stray))


@pytest.mark.parametrize(
    "names",
    [
        [f"train/only/{i}.jpg" for i in range(5)],
        [f"top/train/only/{i}.jpg" for i in range(5)] + [f"top/valid/only/{i}.jpg" for i in range(2)],
        [f"only/{i}.jpg" for i in range(5)],  # flat, one class: the class folder looks like a top folder
        [f"top/only/{i}.jpg" for i in range(5)],
        [f"{i}.jpg" for i in range(5)],  # no class folders at all
        [f"top/{i}.jpg" for i in range(5)],
    ],
)
def test_fewer_than_two_classes_is_refused_with_a_clear_message(names: list[str]) -> None:
    with pytest.raises(DatasetValidationError, match="at least two class"):
        plan_layout(tree(*names))


@pytest.mark.parametrize("top", ["", "PetImages/", "cats_vs_dogs/"])
@pytest.mark.parametrize("classes", [("Cat", "Dog"), ("ねこ", "いぬ"), ("001.A", "002.B", "003.C")])
def test_a_flat_imagefolder_is_accepted_and_split(top: str, classes: tuple[str, ...]) -> None:
    names = [f"{top}{label}/{label}_{i}.jpg" for label in classes for i in range(10)]
    plan = plan_layout(tree(*names, f"{top}.DS_Store", f"{top}{classes[0]}/Thumbs.db"))
    assert plan.layout == "flat" and plan.labels == tuple(sorted(classes)) and len(plan.ignored) == 2
    assert plan.present_splits == ("train",) and plan.top_level == (top.rstrip("/") or None)
    channels = plan_channels(plan, SplitSettings())
    assert Counter(channels.values()) == {
        "train": 8 * len(classes),
        "valid": len(classes),
        "test": len(classes),
    }


def test_a_flat_layout_with_a_stray_deeper_file_says_how_a_flat_layout_looks() -> None:
    with pytest.raises(DatasetValidationError, match=r"<class>/<image>"):
        plan_layout(tree(*[f"{c}/{i}.jpg" for c in "ab" for i in range(3)], "a/sub/x.jpg"))


def test_a_class_called_train_beside_other_classes_is_not_read_as_flat() -> None:
    with pytest.raises(DatasetValidationError, match=r"'dog/1\.jpg' is outside train/"):
        plan_layout(tree("dog/1.jpg", *two_classes()))
