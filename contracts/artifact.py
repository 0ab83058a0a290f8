"""The model artifact's layout (model.tar.gz): what training writes and serving, deploy and reports read."""

from __future__ import annotations

WEIGHTS = "model.pth"  # the state_dict only, loaded with torch.load(weights_only=True)
CONFIG = "model_config.json"
LABELS = "labels.json"
EVALUATION = "evaluation.json"
RUN_INFO = "run.json"
CODE_DIR = "code"
# The serving entry point and what it imports, all from code/ (the serving container adds it to sys.path).
INFERENCE_ENTRY = "inference.py"
INFERENCE_REQUIREMENTS = "requirements.txt"
CONTRACTS_PACKAGE = "contracts"
# training_code modules that serving imports too (one source of preprocessing and architectures).
SERVING_TRAINING_MODULES = ("presets.py", "architectures.py")

TOP_LEVEL_FILES = (WEIGHTS, CONFIG, LABELS, EVALUATION, RUN_INFO)
