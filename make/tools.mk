# Tool environments for deploy-time checks, kept apart from .venv so their pins never fight the app's.
# Included by the top-level Makefile. Each env is rebuilt only when its pinned requirements change.
#   make tools       -> .tools/sam, .tools/checkov, .tools/sagemaker (Python venvs), .tools/node (asl-validator)
#   make sam-build   -> a real `sam build` of template.yaml with the makefile builders (needs PyPI)
#   make mappings    -> regenerate the region -> image Mappings in template.yaml

TOOLS_DIR ?= .tools
TOOLS_PYTHON ?= python3

SAM := $(TOOLS_DIR)/sam/bin/sam
CHECKOV := $(TOOLS_DIR)/checkov/bin/checkov
SAGEMAKER_PYTHON := $(TOOLS_DIR)/sagemaker/bin/python
ASL_VALIDATOR := $(TOOLS_DIR)/node/node_modules/.bin/asl-validator

.PHONY: tools tools-clean sam-build mappings

# `make setup` (and so `make test`) builds the tool environments too.
SETUP_STEPS += tools

tools: $(TOOLS_DIR)/sam/.installed $(TOOLS_DIR)/checkov/.installed $(TOOLS_DIR)/sagemaker/.installed \
       $(TOOLS_DIR)/node/.installed

# A stamp per env: the venv directory's own mtime changes on every install, so it cannot be the target.
$(TOOLS_DIR)/%/.installed: tools/%.txt
	rm -rf $(TOOLS_DIR)/$*
	$(TOOLS_PYTHON) -m venv $(TOOLS_DIR)/$*
	$(TOOLS_DIR)/$*/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(TOOLS_DIR)/node/.installed: tools/package.json tools/package-lock.json
	rm -rf $(TOOLS_DIR)/node
	mkdir -p $(TOOLS_DIR)/node
	cp tools/package.json tools/package-lock.json $(TOOLS_DIR)/node/
	cd $(TOOLS_DIR)/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tools-clean:
	rm -rf $(TOOLS_DIR)

# PIP_PLATFORM / PYTHON_VERSION pass through to the per-function Makefiles (lambdas/*/Makefile).
sam-build: $(TOOLS_DIR)/sam/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) build --template-file template.yaml --build-dir .aws-sam/build

mappings: $(TOOLS_DIR)/sagemaker/.installed
	$(SAGEMAKER_PYTHON) scripts/generate_mappings.py --write
