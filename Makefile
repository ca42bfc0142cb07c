# The README's two commands: `make run` and `make test`, each working on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: the pipeline's default profile (MNIST, Fashion-MNIST, CIFAR-10, all four families,
# a small tuning budget; the offline copies in ../shared/datasets when present) into
# ./artifacts, under Prefect's temporary server. PROFILE=smoke for a few minutes.
PROFILE ?= default
run: $(STAMP)
	$(BIN)/imgclf pipeline --profile $(PROFILE)

# The browser test drives Debian's chromium (Playwright's own browser download needs the
# internet); installed here when missing and apt can, else that one test skips and says why.
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
browser:
	@test -n "$(CHROMIUM)" || apt-get install -y -q --no-install-recommends chromium >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"

# Two workers, a test file each at a time: the slow layer mostly waits on the processes it
# starts (Ray, Prefect, servers), so two files overlap well on two cores.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=30

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/pipeline_stages.py

clean:
	rm -rf $(VENV) artifacts
