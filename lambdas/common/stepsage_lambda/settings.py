"""Typed reading of the Lambdas' environment; a bad value fails loudly and names the allowed ones."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from contracts import hyperparameters as contract
from stepsage_lambda.errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

DEBUGGER_MODES = ("embedded", "managed", "off")
TUNING_STRATEGIES = contract.TUNING_STRATEGIES
EARLY_STOPPING_TYPES = contract.EARLY_STOPPING_TYPES


class DeclaredEnv(Mapping[str, str]):
    """The environment as one Settings class may read it: only the names its ENV_VARS declares.

    Reading any other name is a bug in that class (tests/unit/test_settings_env.py checks that every
    declared name is in the function's template environment), so it fails loudly instead of defaulting.
    """

    def __init__(self, env: Mapping[str, str], names: tuple[str, ...], owner: str) -> None:
        self._env, self._names, self._owner = env, frozenset(names), owner

    def __getitem__(self, name: str) -> str:
        if name not in self._names:
            raise ConfigurationError(f"{self._owner} reads {name}, which its ENV_VARS does not declare")
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._env if name in self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def declared(env: Mapping[str, str], settings_class: type) -> DeclaredEnv:
    names: tuple[str, ...] = settings_class.ENV_VARS  # type: ignore[attr-defined]
    return DeclaredEnv(env, names, settings_class.__name__)


def text(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def integer(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    try:
        value = default if raw in (None, "") else int(str(raw))
    except ValueError as e:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from e
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def hyperparameter(env: Mapping[str, str], name: str, hyperparameter: str, default: str) -> str:
    """A train.py hyperparameter set from the environment, held to its contract (contracts/hyperparameters.py)
    here, so a value the training script would refuse fails the run before any job starts."""
    raw = env.get(name) or default
    try:
        value = contract.SPECS[hyperparameter].parse(raw)
    except contract.InvalidHyperparameter as e:
        raise ConfigurationError(f"{name}={raw!r}: {e}") from e
    return repr(value) if isinstance(value, float) else str(value)


def number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    try:
        return default if raw in (None, "") else float(str(raw))
    except ValueError as e:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from e


def flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use true or false")


def choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    for option in allowed:
        if value.lower() == option.lower():
            return option
    raise ConfigurationError(f"{name}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def hyperparameter_pairs(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`EXTRA_HYPERPARAMETERS="hflip=off patience=3"`: more of train.py's options, fixed for every job."""
    try:
        return contract.parse_extra(env.get(name) or "")
    except contract.InvalidHyperparameter as e:
        raise ConfigurationError(f"{name}: {e}") from e


@dataclass(frozen=True)
class TrainingSettings:
    """What every training job of a run shares: image, hardware, limits, spot and where outputs go."""

    artifacts_bucket: str
    training_image: str
    region: str
    stack_name: str
    tuning_instance_type: str
    final_instance_type: str
    volume_size_gb: int
    use_spot: bool
    max_runtime_seconds: int
    max_wait_seconds: int
    model_architecture: str
    weights: str
    image_size: str
    epochs: int
    final_epochs: int
    debugger_mode: str
    extra_hyperparameters: dict[str, str] = field(default_factory=dict)

    # AWS_REGION and AWS_DEFAULT_REGION are the Lambda runtime's own; every other name is in template.yaml.
    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "ARTIFACTS_BUCKET",
        "TRAINING_IMAGE_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "STACK_NAME",
        "TUNING_INSTANCE_TYPE",
        "FINAL_INSTANCE_TYPE",
        "VOLUME_SIZE_GB",
        "USE_SPOT_TRAINING",
        "MAX_RUNTIME_SECONDS",
        "MAX_WAIT_SECONDS",
        "MODEL_ARCHITECTURE",
        "WEIGHTS",
        "IMAGE_SIZE",
        "EPOCHS",
        "FINAL_EPOCHS",
        "DEBUGGER_MODE",
        "EXTRA_HYPERPARAMETERS",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TrainingSettings:
        env = declared(env, cls)
        max_runtime = integer(env, "MAX_RUNTIME_SECONDS", 3600, minimum=1)
        epochs = int(hyperparameter(env, "EPOCHS", contract.EPOCHS, "10"))
        tuning_instance = text(env, "TUNING_INSTANCE_TYPE", "ml.g4dn.xlarge")
        return cls(
            artifacts_bucket=text(env, "ARTIFACTS_BUCKET"),
            training_image=text(env, "TRAINING_IMAGE_URI"),
            region=text(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
            stack_name=text(env, "STACK_NAME", "stepsage"),
            tuning_instance_type=tuning_instance,
            final_instance_type=text(env, "FINAL_INSTANCE_TYPE", tuning_instance),
            volume_size_gb=integer(env, "VOLUME_SIZE_GB", 30, minimum=1),
            use_spot=flag(env, "USE_SPOT_TRAINING"),
            max_runtime_seconds=max_runtime,
            # Spot waits cover interruptions; AWS requires MaxWaitTimeInSeconds >= MaxRuntimeInSeconds.
            max_wait_seconds=max(integer(env, "MAX_WAIT_SECONDS", 2 * max_runtime, minimum=1), max_runtime),
            # "auto" lets train.py choose by weights: resnet50 at 224 px on ImageNet, smaller from scratch.
            model_architecture=hyperparameter(env, "MODEL_ARCHITECTURE", contract.MODEL, contract.AUTO),
            weights=hyperparameter(env, "WEIGHTS", contract.WEIGHTS, "imagenet"),
            image_size=hyperparameter(env, "IMAGE_SIZE", contract.IMAGE_SIZE, contract.AUTO),
            epochs=epochs,
            final_epochs=int(hyperparameter(env, "FINAL_EPOCHS", contract.EPOCHS, str(epochs))),
            debugger_mode=choice(env, "DEBUGGER_MODE", DEBUGGER_MODES, "embedded"),
            extra_hyperparameters=hyperparameter_pairs(env, "EXTRA_HYPERPARAMETERS"),
        )
