#!/bin/sh
# Install openkws with its runtime dependencies only (pyproject `dependencies`, no torch) into a new
# virtual environment. docker/Dockerfile's build stage runs this, and so does
# tests/deploy/test_runtime_env.py, so the test serves from exactly the image's dependency set.
#
#   usage: install-runtime.sh VENV SRC [EXTRAS]      e.g. install-runtime.sh /opt/venv /src postgres
#   PYTHON: the interpreter that creates the venv (default python3)
set -eu
venv=$1
src=$2
extras=${3:-}
spec=$src
if [ -n "$extras" ]; then spec="$src[$extras]"; fi

"${PYTHON:-python3}" -m venv "$venv"
# Binary wheels only: the image has no compiler and needs none. `distance` (pure Python, required by
# g2p_en) is published only as an sdist; it builds without a compiler.
"$venv/bin/pip" install --disable-pip-version-check --only-binary=:all: --no-binary=distance "$spec"
case ",$extras," in
*,gpu,*)
    # onnxruntime / onnxruntime-gpu and faiss-cpu / faiss-gpu-cu12 install the same modules; the
    # CPU builds (base dependencies) must go, or they shadow the GPU builds.
    ort=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('onnxruntime-gpu'))")
    fgpu=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('faiss-gpu-cu12'))")
    "$venv/bin/pip" uninstall --disable-pip-version-check -y onnxruntime onnxruntime-gpu faiss-cpu faiss-gpu-cu12
    "$venv/bin/pip" install --disable-pip-version-check --no-deps "onnxruntime-gpu==$ort" "faiss-gpu-cu12==$fgpu"
    ;;
esac
if "$venv/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"; then
    echo "install-runtime.sh: torch ended up in the runtime environment; it must not" >&2
    exit 1
fi
# The runtime needs no installer.
"$venv/bin/pip" uninstall --disable-pip-version-check -y -q pip setuptools wheel 2>/dev/null || true
