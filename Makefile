# Every target creates or reuses .venv and installs what it needs, so a fresh machine only
# needs Python 3.10+ and make. torch/torchvision are pinned to the builds served from this
# machine's local disk; install them first so no other requirement pulls a different build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.deps-$(shell cat setup.cfg | cksum | cut -d' ' -f1)

.PHONY: demo test bench frontend frontend-check lint wheel-check browser clean screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH)
	touch $@

# Re-install the project when setup.cfg changes (the stamp name carries its checksum).
$(STAMP): setup.cfg | $(VENV)/.torch
	$(PIP) install -q -e ".[test,demo,lightning,bench]" $(TORCH)
	rm -f $(VENV)/.deps-*; touch $@

demo: $(STAMP)
	$(VENV)/bin/deepvid demo $(ARGS)

# docs/img/demo_*.png from a fresh run of the default shortcut story (Playwright + Debian's chromium).
screenshots: $(STAMP) browser
	rm -rf /tmp/deepvid-demo
	$(VENV)/bin/deepvid demo --no-serve --out /tmp/deepvid-demo
	$(PY) docs/screenshots.py --out /tmp/deepvid-demo

# Debian's chromium, for the browser tests (Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

test: $(STAMP) browser
	$(PY) -m ruff check deepvid_plugin tests benchmarks docs
	$(VENV)/bin/lint-imports  # the layer contracts in pyproject.toml (docs/architecture.md)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) browser
	$(PY) -m benchmarks.run $(ARGS)

# Rebuild the frontend bundle into package data (needs Node; the built files are committed).
frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build

frontend-check:
	bash .ci/frontend-check

wheel-check: $(STAMP)
	bash .ci/wheel-check

clean:
	rm -rf $(VENV) build dist *.egg-info
