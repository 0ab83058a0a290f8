"""Every supported backbone gets a head of the right size; bad names list the allowed ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import architectures

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(architectures.ARCHITECTURES))
def test_head_matches_class_count(name):
    torch.manual_seed(0)
    model = architectures.build_model(name, num_classes=7, weights="none").eval()
    parent, attr = architectures.head_of(model)
    head = parent[int(attr)] if attr.isdigit() else getattr(parent, attr)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 7
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_unknown_model_lists_allowed_values():
    with pytest.raises(ValueError) as error:
        architectures.build_model("vgg99", 3)
    for name in architectures.ARCHITECTURES:
        assert name in str(error.value)


def test_unknown_weights_lists_allowed_values():
    with pytest.raises(ValueError, match=r"imagenet, none"):
        architectures.build_model("resnet18", 3, weights="coco")


def test_state_round_trip_uses_weights_only(tmp_path):
    model = architectures.build_model("resnet18", 4)
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    clone = architectures.load_state(architectures.build_model("resnet18", 4), str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key])
    # A pickled object (not plain tensors) is refused by weights_only loading.
    torch.save({"evil": object()}, tmp_path / "bad.pth")
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        architectures.load_state(model, str(tmp_path / "bad.pth"))
