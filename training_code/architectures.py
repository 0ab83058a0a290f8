"""Torchvision backbones with a new classification head; shared by training and the serving container."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torchvision import models

from contracts import hyperparameters

# name -> (builder, ImageNet weights enum name used on AWS); the names are contracts.hyperparameters'
# ARCHITECTURES (the template and the Lambdas offer them), and a test proves the two agree.
ARCHITECTURES: dict[str, tuple] = {
    "resnet18": (models.resnet18, "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34": (models.resnet34, "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50": (models.resnet50, "ResNet50_Weights.IMAGENET1K_V2"),
    "mobilenet_v3_large": (models.mobilenet_v3_large, "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    "efficientnet_b0": (models.efficientnet_b0, "EfficientNet_B0_Weights.IMAGENET1K_V1"),
    "convnext_tiny": (models.convnext_tiny, "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"),
}
WEIGHTS_CHOICES = hyperparameters.WEIGHTS_CHOICES


def _weights_enum(name: str):
    enum_name, member = ARCHITECTURES[name][1].split(".")
    return getattr(getattr(models, enum_name), member)


def head_of(model: nn.Module) -> tuple[nn.Module, str]:
    """The module that holds the classifier's last Linear, and that Linear's attribute name."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return model, "fc"
    classifier = cast(nn.Sequential, model.classifier)
    return classifier, str(len(classifier) - 1)


def build_model(name: str, num_classes: int, weights: str = "none") -> nn.Module:
    """A backbone with a fresh `num_classes` head. `weights="imagenet"` downloads pretrained weights."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"unknown weights {weights!r}; choose one of: {', '.join(WEIGHTS_CHOICES)}")
    builder = ARCHITECTURES[name][0]
    model = builder(weights=_weights_enum(name) if weights == "imagenet" else None)
    parent, attr = head_of(model)
    old = cast(nn.Linear, parent.get_submodule(attr))
    # Module.__setattr__ replaces a registered child in place, also a Sequential's "3".
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return model


def load_state(model: nn.Module, path: str, device: str = "cpu") -> nn.Module:
    """Load a state_dict saved by training; weights_only refuses pickled code."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model
