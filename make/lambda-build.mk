# Shared recipe of the SAM makefile builds (lambdas/*/Makefile, layers/*/Makefile).
#
# SAM's makefile builder copies the CodeUri/ContentUri folder to a scratch directory and runs
# `make --makefile <original folder>/Makefile build-<LogicalId>` there with ARTIFACTS_DIR set. So every path
# here derives from the Makefile's real location, never from the working directory: the same targets work
# from SAM's scratch copy, from the source folder and from the local cloud's builds
# (`make -f lambdas/<fn>/Makefile build-<LogicalId> ARTIFACTS_DIR=... PYTHON_VERSION=3.11`).
#
# Wheels are chosen for Lambda's platform, not this machine's: no Docker and no matching interpreter needed.
# manylinux_2_28 comes first because Lambda's AL2023 has glibc 2.34, and manylinux2014 alone quietly picks
# older Pillow and numpy. pip does not widen a manylinux_2_28 --platform to older glibc tags (it does for
# manylinux2014), so wheels published only as manylinux2014 (pydantic-core, for one) need the second tag.

PIP_PLATFORM ?= manylinux_2_28_x86_64
PIP_FALLBACK_PLATFORMS ?= manylinux2014_x86_64
PYTHON_VERSION ?= 3.12
PIP ?= python3 -m pip

REPO_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

# Caches never ship; build inputs and local-only files do not ship as Lambda code either.
CACHE_EXCLUDES := --exclude=__pycache__ --exclude='*.pyc' --exclude=.pytest_cache --exclude=.mypy_cache
SHIP_EXCLUDES := $(CACHE_EXCLUDES) --exclude=Makefile --exclude=requirements.txt --exclude='*.md' --exclude=tests

# $(call pip_install,TARGET_DIR,REQUIREMENTS_FILE): --no-compile, since .pyc of this machine's Python would
# be dead weight for the Lambda runtime's; --upgrade keeps a rebuild into the same folder idempotent;
# --no-warn-conflicts, since pip would compare the target with this machine's unrelated site-packages.
pip_install = $(PIP) install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile --upgrade \
	--target $(1) $(addprefix --platform ,$(PIP_PLATFORM) $(PIP_FALLBACK_PLATFORMS)) \
	--python-version $(PYTHON_VERSION) \
	--implementation cp --only-binary=:all: -r $(2)

# $(call copy_tree,SOURCE_DIR,TARGET_DIR[,EXCLUDES]): the folder's files, keeping subfolders.
copy_tree = mkdir -p $(2) && tar -C $(1) $(if $(3),$(3),$(SHIP_EXCLUDES)) -cf - . | tar -C $(2) -xf -

# $(call copy_contracts,TARGET_DIR): the standard-library contracts package (repository root), byte for
# byte, as TARGET_DIR/contracts. Every unit gets its copy here; tests/unit/test_contracts_parity.py fails
# when a built copy drifts.
copy_contracts = $(call copy_tree,$(REPO_ROOT)/contracts,$(1)/contracts,$(CACHE_EXCLUDES))

# $(call build_python,SOURCE_DIR,TARGET_DIR): pinned requirements (when the folder has any), then the code.
define build_python
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: run through `sam build` or pass ARTIFACTS_DIR=...))
	$(if $(wildcard $(1)/requirements.txt),$(call pip_install,$(2),$(1)/requirements.txt))
	$(call copy_tree,$(1),$(2))
endef
