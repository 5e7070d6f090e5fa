# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# `make lint` checks format, lint and types (CI runs it before the tests).
# The virtualenv is made once; installs re-run only when a pyproject or the constraints change.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PLUGINS := plugins/geobind-ground plugins/geobind-text plugins/geobind-audio plugins/geobind-location
STAMP  := $(VENV)/.geobind-installed
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint install bench pretrain clean

demo: $(STAMP)
	$(VENV)/bin/geobind demo

# one pytest-xdist worker per core, each test file on one worker (its module fixtures built
# once), the longest files handed out first (tests/conftest.py, which also shares the cores
# between the workers' torch threads)
test: $(STAMP)
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,dev]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

# The demo's CLAP sound tower, CLIP, anchor and the sound tower aligned to that anchor,
# pretrained again from scratch on a synthetic world of their own (about an hour;
# recipes/world/pretrain-clap.yaml, then pretrain.yaml, whose audio stage starts from CLAP's
# tower): rewrites geobind/recipes/world/weights/, which the demo imports (CLIP) and starts its
# anchor and audio stages from.
pretrain: $(STAMP)
	$(VENV)/bin/geobind world make --out geobind-pretrain/world --places 30000 --seed 2 --sounds
	$(VENV)/bin/geobind train world/pretrain-clap --space geobind-pretrain/clap \
		data_dir=geobind-pretrain/world
	$(PY) -m geobind.train.pretrained geobind-pretrain/clap
	$(VENV)/bin/geobind train world/pretrain --space geobind-pretrain/space \
		data_dir=geobind-pretrain/world
	$(PY) -m geobind.train.pretrained geobind-pretrain/space

bench: $(STAMP)
	$(PY) benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) geobind-demo geobind-pretrain
