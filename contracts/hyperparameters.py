"""train.py's hyperparameters that the pipeline sends: names, types, bounds, choices and the search space."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# train.py's CLI arguments (SageMaker passes each hyperparameter as `--name value`).
MODEL = "model"
WEIGHTS = "weights"
EPOCHS = "epochs"
IMAGE_SIZE = "image-size"
LEARNING_RATE = "lr"
BATCH_SIZE = "batch-size"
WEIGHT_DECAY = "weight-decay"
LABEL_SMOOTHING = "label-smoothing"
AUGMENTATION = "augment"
HFLIP = "hflip"
DEBUG_HOOK = "debug-hook"
PROFILE = "profile"

AUTO = "auto"  # train.py decides from the weights and the data
ON_OFF = ("on", "off")
# The names only: training_code/architectures.py and presets.py hold the builders and transforms, and a
# test proves they cover exactly these.
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny")
WEIGHTS_CHOICES = ("imagenet", "none")
AUGMENTATIONS = ("none", "light", "standard", "strong")


class InvalidHyperparameter(ValueError):
    """A value outside its hyperparameter's type, bounds or choices; the message names what is allowed."""


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    kind: type  # int, float or str (a choice)
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    choices: tuple[str, ...] = ()
    auto: bool = False

    def allowed(self) -> str:
        """What the value may be, for messages and docs."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        kind = "an integer" if self.kind is int else "a number"
        return f"{AUTO!r} or {kind}" if self.auto else kind

    def bounds(self) -> str:
        low = "> 0" if self.kind is int and self.minimum == 1 else f">= {self.minimum:g}"
        return f"{low} and <= {self.maximum:g}"

    def parse(self, value: str) -> str | int | float:
        """The value as train.py uses it; InvalidHyperparameter when it is outside this contract."""
        raw = str(value).strip()
        if self.choices:
            if raw in self.choices:
                return raw
            raise InvalidHyperparameter(f"{self.name}={value!r} is not allowed; choose {self.allowed()}")
        if self.auto and raw.lower() == AUTO:
            return AUTO
        try:
            number: int | float = int(raw) if self.kind is int else float(raw)
        except ValueError as e:
            raise InvalidHyperparameter(f"{self.name}={value!r} is not {self.allowed()}") from e
        low, high = self.minimum, self.maximum
        if not math.isfinite(number) or low is None or high is None or not low <= number <= high:
            raise InvalidHyperparameter(f"{self.name}={value!r} must be {self.bounds()}")
        return number


SPECS = {
    spec.name: spec
    for spec in (
        Hyperparameter(MODEL, str, choices=(AUTO, *ARCHITECTURES)),
        Hyperparameter(WEIGHTS, str, choices=WEIGHTS_CHOICES),
        Hyperparameter(EPOCHS, int, 1, 200),
        # Below 16 px the backbones' strides leave nothing to classify; above 512 a trial no longer fits a
        # 16 GB GPU at the tuned batch sizes.
        Hyperparameter(IMAGE_SIZE, int, 16, 512, auto=True),
        Hyperparameter(LEARNING_RATE, float, 1e-6, 1.0, auto=True),
        Hyperparameter(BATCH_SIZE, int, 1, 1024),
        Hyperparameter(WEIGHT_DECAY, float, 0.0, 1.0, auto=True),
        Hyperparameter(LABEL_SMOOTHING, float, 0.0, 0.5),
        Hyperparameter(AUGMENTATION, str, choices=AUGMENTATIONS),
        Hyperparameter(HFLIP, str, choices=ON_OFF),
        Hyperparameter(DEBUG_HOOK, str, choices=ON_OFF),
        Hyperparameter(PROFILE, str, choices=ON_OFF),
    )
}
# Template parameters are checked by CloudFormation's AllowedPattern (a full match), so the integer bounds
# above are restated as patterns; tests/unit/test_hyperparameter_parity.py proves each equals its bounds.
IMAGE_SIZE_PATTERN = "^(auto|1[6-9]|[2-9][0-9]|[1-4][0-9]{2}|50[0-9]|51[0-2])$"

# ------------------------------------------------------------------------------------------- the tuning

TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
EARLY_STOPPING_TYPES = ("Auto", "Off")
MAX_TRAINING_JOBS = (1, 100)
# SageMaker's own ResourceLimits bound; the account's instance quota is usually lower.
MAX_PARALLEL_TRAINING_JOBS = (1, 100)
# The stack's learning-rate range (template LearningRateMin/Max, LaunchHpo LR_MIN/LR_MAX) defaults to this.
DEFAULT_LR_RANGE = (1e-4, 1e-2)


@dataclass(frozen=True)
class ContinuousRange:
    name: str
    minimum: float
    maximum: float
    scaling: str  # SageMaker's ScalingType


# The learning rate's range is the stack's (DEFAULT_LR_RANGE unless set); the other ranges are fixed.
CONTINUOUS_RANGES = (
    ContinuousRange(WEIGHT_DECAY, 1e-6, 1e-2, "Logarithmic"),
    ContinuousRange(LABEL_SMOOTHING, 0.0, 0.2, "Linear"),
)
CATEGORICAL_RANGES = {BATCH_SIZE: ("32", "64", "128"), AUGMENTATION: ("light", "standard", "strong")}
# Grid search takes only categorical ranges: GRID_LR_STEPS learning rates spread evenly in log space, and
# these values of the rest (3 x 2 x 2 = 12 jobs).
GRID_LR_STEPS = 3
GRID_RANGES = {BATCH_SIZE: ("32", "64"), AUGMENTATION: ("light", "standard")}
TUNED = (LEARNING_RATE, *(r.name for r in CONTINUOUS_RANGES), *CATEGORICAL_RANGES)


def grid_learning_rates(lr_min: float, lr_max: float) -> tuple[str, ...]:
    """GRID_LR_STEPS values from lr_min to lr_max, evenly spaced in log space, as SageMaker gets them."""
    step = (math.log(lr_max) - math.log(lr_min)) / (GRID_LR_STEPS - 1)
    inner = [math.exp(math.log(lr_min) + i * step) for i in range(1, GRID_LR_STEPS - 1)]
    # The ends as given (as the continuous range sends them), so rounding never leaves the range.
    return (repr(lr_min), *(f"{v:.3g}" for v in inner), repr(lr_max))


# ------------------------------------------------------------------------------ ExtraHyperParameters

# Names the pipeline sets itself (fixed or tuned): an extra one would be overwritten or, tuned, make AWS
# refuse the tuning job (a hyperparameter cannot be both static and tuned).
PIPELINE_SET = (MODEL, WEIGHTS, EPOCHS, IMAGE_SIZE, DEBUG_HOOK, PROFILE, *TUNED)
_RESERVED = "|".join(PIPELINE_SET)  # names are [a-z-], nothing to escape
_EXTRA_PAIR = rf"(?!sagemaker)(?!(?:{_RESERVED})=)[a-z][a-z0-9-]{{0,62}}=[a-z0-9.-]+"
# `hflip=off patience=3` or `hflip=off, patience=3`: more of train.py's options, fixed for every job.
EXTRA_HYPERPARAMETERS_PATTERN = rf"^[ ,]*({_EXTRA_PAIR}([ ,]+{_EXTRA_PAIR})*[ ,]*)?$"
EXTRA_HYPERPARAMETERS_RULE = (
    "space- or comma-separated name=value pairs of train.py options in lower case, "
    f"none of them the platform's (sagemaker...) or one the pipeline sets ({', '.join(PIPELINE_SET)})"
)


def parse_extra(text: str) -> dict[str, str]:
    """ExtraHyperParameters -> {name: value}; InvalidHyperparameter when outside the pattern or a value
    is outside its hyperparameter's contract."""
    if not re.fullmatch(EXTRA_HYPERPARAMETERS_PATTERN, text):
        raise InvalidHyperparameter(f"{text[:200]!r} is not {EXTRA_HYPERPARAMETERS_RULE}")
    pairs = dict(item.split("=", 1) for item in text.replace(",", " ").split())
    for name, value in pairs.items():
        if name in SPECS:
            SPECS[name].parse(value)
    return pairs
