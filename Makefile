# Two commands do everything on a fresh clone:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test browser clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## Main job: synthesize, manipulate and detect from the shipped weights (no training, no ../shared needed)
demo: $(STAMP)
	$(BIN)/medfake demo --out demo_out

## Browser for the web-page tests (Debian chromium); skipped silently if apt is unavailable
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ) || \
	  echo "chromium not installed: browser tests will be skipped"

## Tests (data-dependent tests use ../shared/datasets/medimg128 when present, else skip with a reason)
test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo_out runs .pytest_cache
