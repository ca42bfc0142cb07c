# The README's two commands: `make run` and `make test`, each working on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHARED := ../shared/datasets
# The offline copy when this machine has it, else the canonical download (verified).
MNIST_SOURCE := $(if $(wildcard $(SHARED)/mnist),--source $(SHARED)/mnist,)

.PHONY: run test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job until the pipeline lands: prepare MNIST, train the CNN on Ray, evaluate it.
run: $(STAMP)
	$(BIN)/imgclf prepare --dataset mnist $(MNIST_SOURCE)
	$(BIN)/imgclf train --dataset mnist --model cnn --epochs 1
	$(BIN)/imgclf evaluate --dataset mnist --model cnn

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) artifacts
