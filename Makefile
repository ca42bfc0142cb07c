# The README's two commands: `make run` and `make test`, each working on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: the pipeline's default profile (MNIST and Fashion-MNIST, all four families,
# a small tuning budget; the offline copies in ../shared/datasets when present) into
# ./artifacts, under Prefect's temporary server. PROFILE=smoke for a few minutes.
PROFILE ?= default
run: $(STAMP)
	$(BIN)/imgclf pipeline --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) artifacts
