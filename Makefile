# openkws developer entry points. `make setup` installs system + python deps on Debian.
PY ?= python3
APT_PACKAGES = espeak-ng sox libsox-fmt-all flite festival festvox-kallpc16k festvox-kdlpc16k \
	festvox-us-slt-hts asterisk-core-sounds-en-g722 asterisk-core-sounds-en fortunes libsndfile1 \
	postgresql \
	prometheus chromium chromium-driver

.PHONY: setup setup-system setup-python run test lint audit bench soak data train

setup: setup-system setup-python

setup-system:
	@if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi

# torch is installed first and pinned: the CPU wheel; an unpinned torch drags in GBs of CUDA.
# EfficientWord-Net (a benchmark peer) goes in with --no-deps: its declared pyaudio/twine/requests are not needed.
setup-python:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,dev,bench,postgres]"
	$(PY) -m pip install -q --no-deps EfficientWord-Net==1.0.5

run:
	openkws serve

test:
	$(PY) -m pytest -q -x --timeout=900

lint:
	ruff check service training tests bench tools
	ruff check --select C901 service training
	ruff format --check service training tests bench tools
	mypy service

# Dependency advisories (pip-audit, PyPI service). Exit 1: vulnerabilities; 2: no audit result (network).
audit:
	$(PY) tools/audit_deps.py

bench:
	$(PY) -m bench.run_all

soak:
	$(PY) -m bench.soak --minutes 10

data:
	openkws data synth
	openkws data evalsets

train:
	openkws train run --config training/configs/default.yaml
