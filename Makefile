# openkws developer entry points. `make setup` installs system + python deps on Debian.
PY ?= python3
APT_PACKAGES = espeak-ng sox libsox-fmt-all flite festival festvox-kallpc16k festvox-kdlpc16k \
	festvox-us-slt-hts asterisk-core-sounds-en-g722 asterisk-core-sounds-en asterisk-moh-opsound-wav fortunes libsndfile1 \
	postgresql \
	podman runc debootstrap haproxy \
	prometheus chromium chromium-driver libportaudio2

.PHONY: setup setup-system setup-python setup-tools run test lint audit bench soak data train \
	robust-voices robust-cache robust-train robust-eval stream-data stream-s stream-sm stream-export stream-eval stream-v

setup: setup-system setup-python setup-tools

# checkov (tests/deploy/test_manifests.py) lives in its own venv: its pins would downgrade ours.
CHECKOV_VENV ?= $(HOME)/.local/share/openkws/checkov-venv

setup-system:
	@if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	@# `kubectl kustomize` renders deploy/: Debian's kubernetes-client, unless a kubectl is already there
	@# (another package's /usr/bin/kubectl would make the install fail on the shared path).
	@command -v kubectl >/dev/null || { if [ "$$(id -u)" = "0" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; \
	else sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; fi; }

# torch is installed first and pinned: the CPU wheel; an unpinned torch drags in GBs of CUDA.
# EfficientWord-Net (a benchmark peer) goes in with --no-deps: its declared pyaudio/twine/requests are not needed.
setup-python:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,dev,bench,postgres]"
	$(PY) -m pip install -q --no-deps EfficientWord-Net==1.0.5

setup-tools:
	@test -x $(CHECKOV_VENV)/bin/checkov || { $(PY) -m venv $(CHECKOV_VENV) && $(CHECKOV_VENV)/bin/pip install -q checkov==3.3.30; }

run:
	openkws serve

test:
	$(PY) -m pytest -q -x --timeout=900

lint:
	ruff check src tests bench tools
	ruff check --select C901 src
	ruff format --check src tests bench tools
	mypy src/openkws --exclude src/openkws/training
	$(PY) -m pytest -q --noconftest -p no:cacheprovider tests/test_layers.py  # the layer contract

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
	openkws train run --config default

# Issue 11's robust model, one command per stage (each resumable; wall times in docs/RESULTS.md).
# On a machine with CUDA (onnxruntime-gpu, torch with CUDA) the cache's front-end and training use
# the GPU by themselves (`train.device: auto`).
ROBUST_CONFIG ?= robust_full
ROBUST_RUN ?= runs/robust_full
robust-voices:
	openkws data voices --voice piper:joe --clips 12000 --splice-into data/synth/manifest_voices.csv
robust-cache:
	openkws train cache --config $(ROBUST_CONFIG) --workers 2
robust-train:
	openkws train run --config $(ROBUST_CONFIG) --out $(ROBUST_RUN) --export $(ROBUST_RUN)/model \
		$$(test -f $(ROBUST_RUN)/checkpoints/last.pt && echo --resume)
robust-eval:
	bench/model_eval.sh $(ROBUST_RUN)/model runs/eval/robust_full --streams

# Issue 21: train for the stream (each stage resumable, logged; docs/RESULTS.md has wall times).
# Rows: S = keyword-end windows of TTS streams; SM = S + negatives mined from a 50k phrase bank.
STREAM_RUNS ?= runs
stream-data:
	openkws train stream data --out data/stream_train --workers 2
stream-s:
	openkws train stream fit --out $(STREAM_RUNS)/stream_s --steps 1200 --lr 3e-5
stream-sm:
	openkws train stream fit --out $(STREAM_RUNS)/stream_sm --mine --steps 1200 --lr 3e-5
stream-export:
	for r in stream_s stream_sm; do openkws export --checkpoint $(STREAM_RUNS)/$$r/checkpoints/best.pt \
		--out $(STREAM_RUNS)/$$r/model --model-version $$r-$$(date +%F); done
stream-eval:
	for r in stream_s stream_sm; do bench/stream_rows.sh $(STREAM_RUNS)/$$r/model runs/eval/$$r; done
# Row J: S+M beside the clip corpus (a 60k-clip prefix of the synthesis plan, robust renditions).
stream-j:
	openkws data synth --num-clips 60000
	openkws train stream corpus-manifest --manifest data/synth/manifest.csv --out data/joint/manifest.csv
	openkws train cache --config joint --workers 2
	openkws train stream fit --data data/stream_train2 --out $(STREAM_RUNS)/stream_j --corpus joint --mine \
		--steps 800 --lr 3e-5 --val-every 800 --val-streams 512
# Row V: the phoneme-level verifier on the shipped model's candidates (validation FRR in report.json).
stream-v:
	openkws train stream verifier --data data/stream_train2 --out $(STREAM_RUNS)/verifier --candidate 0.35 --steps 6000
