"""The one definition of image preprocessing, shared by training and by the serving container."""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T

from contracts import hyperparameters

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eval resizes to image_size / CROP_RATIO and center-crops, as torchvision's reference recipes do.
CROP_RATIO = 0.875
AUGMENTATIONS = hyperparameters.AUGMENTATIONS


def resize_size(image_size: int) -> int:
    return round(image_size / CROP_RATIO)


def eval_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> T.Compose:
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(resize_size(image_size), antialias=True),
            T.CenterCrop(image_size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def train_transform(
    image_size: int,
    augment: str = "standard",
    hflip: bool = True,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> T.Compose:
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {augment!r}")
    if augment == "none":
        return eval_transform(image_size, mean, std)
    steps: list = [T.ToImage()]
    if augment == "light":
        steps += [T.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True)]
    else:
        steps += [
            T.RandomResizedCrop(
                image_size, scale=(0.25 if augment == "strong" else 0.35, 1.0), antialias=True
            )
        ]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if augment == "strong":
        steps.append(T.TrivialAugmentWide())
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean=list(mean), std=list(std))]
    if augment == "strong":
        steps.append(T.RandomErasing(p=0.25))
    return T.Compose(steps)
