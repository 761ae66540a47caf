#!/usr/bin/env bash
# The GPU path, run for real (at most ~8 minutes): a fresh virtual environment with the `gpu` extra,
# the service started on the CUDA provider, /readyz checked for cuda without fallback, the service
# benchmark run against it (FAISS GPU index), keyword-scoring throughput at 10k and 100k keywords.
#
#   bash bench/gpu_check.sh                      # on a machine with an NVIDIA GPU
#   WHEELS=/path/to/wheelhouse bash bench/gpu_check.sh   # offline: pip --no-index --find-links
#   GPU_CHECK_PYTHON=$(which python) bash bench/gpu_check.sh --allow-cpu --quick   # no GPU: CPU run
#
# Options: --allow-cpu  without a usable GPU, say so and run the same steps on CPU (exit 0) instead
#                       of exiting 2; --quick  short levels (CI, smoke test).
# Env: GPU_CHECK_PYTHON  use this interpreter instead of creating the fresh venv (its packages as they
#      are); WHEELS  a wheelhouse for offline installs; OUT  results folder (default bench/out/gpu).
# Prints the figures and writes $OUT/*.json; exit 2 when no GPU and no --allow-cpu, 1 on a failed check.
set -euo pipefail

ALLOW_CPU=0
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --allow-cpu) ALLOW_CPU=1 ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $arg (use --allow-cpu, --quick)" >&2; exit 64 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-bench/out/gpu}"
mkdir -p "$OUT"
START_S=$SECONDS
log() { printf '[gpu_check %3ds] %s\n' "$((SECONDS - START_S))" "$*"; }

# 1. Python with the gpu extra --------------------------------------------------------------------
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
  PY="$GPU_CHECK_PYTHON"
  log "using $PY as it is (GPU_CHECK_PYTHON set; no fresh venv)"
else
  VENV="${VENV:-/tmp/openkws-gpu-venv}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  PY="$VENV/bin/python"
  PIP=("$PY" -m pip install -q)
  [[ -n "${WHEELS:-}" ]] && PIP+=(--no-index --find-links "$WHEELS")
  log "installing openkws[gpu] into $VENV"
  "${PIP[@]}" -e ".[gpu]"
  # onnxruntime and onnxruntime-gpu (faiss-cpu and faiss-gpu-cu12) install the same module: keep
  # only the GPU builds
  "$PY" -m pip uninstall -q -y onnxruntime faiss-cpu || true
  "${PIP[@]}" --force-reinstall --no-deps onnxruntime-gpu faiss-gpu-cu12
fi

DEVICE=cuda
if ! "$PY" - <<'EOF'
import sys
import onnxruntime as ort
sys.exit(0 if "CUDAExecutionProvider" in ort.get_available_providers() else 1)
EOF
then
  if [[ $ALLOW_CPU -eq 1 ]]; then
    log "NO GPU: onnxruntime offers no CUDAExecutionProvider here; running the same steps on CPU (--allow-cpu)"
    DEVICE=cpu
  else
    log "NO GPU: onnxruntime offers no CUDAExecutionProvider (no GPU, or the gpu extra is missing); use --allow-cpu for a CPU run"
    exit 2
  fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/[gpu] /' || true

# 2. The service on the device; /readyz must say so ------------------------------------------------
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d)"
OPENKWS_DEVICE=$DEVICE "$PY" -m openkws.cli serve --host 127.0.0.1 --port "$PORT" --model-dir src/openkws/models/default \
  --data-dir "$DATA" --log-level warning > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT
ready=0
for _ in $(seq 1 600); do
  if "$PY" -c "import httpx,sys; r=httpx.get('http://127.0.0.1:$PORT/readyz', timeout=2); r.raise_for_status(); open(sys.argv[1],'w').write(r.text)" "$OUT/readyz.json" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$SERVER" 2>/dev/null || { log "server exited:"; tail -20 "$OUT/server.log"; exit 1; }
  sleep 0.2
done
[[ $ready -eq 1 ]] || { log "server not ready after 120 s"; tail -20 "$OUT/server.log"; exit 1; }
"$PY" - "$OUT/readyz.json" "$DEVICE" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
dev = sys.argv[2]
onnx, index, fb = r["backend"]["onnx"], r["backend"]["index"], r["device"]["fallback"]
print(f"[readyz] onnx backend {onnx}, index {index}, providers {r['device']['onnx_providers']}, fallback {fb}")
want_index = "gpu" if dev == "cuda" else "cpu"
if onnx != dev or fb or index != want_index:
    sys.exit(f"[readyz] FAIL: expected onnx {dev!r}, index {want_index!r}, no fallback ({r['device'].get('warning')})")
print("[readyz] OK")
EOF
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

# 3. Service benchmark on the device (its own server), 100 keywords, latency from the keyword's end --
if [[ $QUICK -eq 1 ]]; then LEVELS="4,8"; SECS=4; else LEVELS="64,150,300,600,1000"; SECS=15; fi
log "service benchmark on $DEVICE: levels $LEVELS, ${SECS} s each"
"$PY" -m bench.service_bench --model src/openkws/models/default --device "$DEVICE" --skip-scaling \
  --levels "$LEVELS" --seconds "$SECS" --out "$OUT/service_$DEVICE.json" | tail -n 12

# 4. Keyword-scoring throughput ---------------------------------------------------------------------
if [[ $QUICK -eq 1 ]]; then KW="1000,10000"; Q=256; else KW="10000,100000"; Q=4096; fi
"$PY" -m bench.index_throughput --keywords "$KW" --queries "$Q" --device "$DEVICE" | tee "$OUT/index_$DEVICE.jsonl"

# 5. Summary ----------------------------------------------------------------------------------------
"$PY" - "$OUT" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path
out, dev = Path(sys.argv[1]), sys.argv[2]
sb = json.loads((out / f"service_{dev}.json").read_text())
unit = "GPU" if dev == "cuda" else "CPU machine (NO GPU: fallback run)"
print(f"RESULT streams per {unit} at p95 <= 500 ms: {sb['max_realtime_streams_p95_le_500ms']}")
for line in (out / f"index_{dev}.jsonl").read_text().splitlines():
    r = json.loads(line)
    print(f"RESULT keyword scoring, {r['keywords']} keywords ({r['backend']}): {r['windows_per_s']} windows/s, "
          f"{r['keyword_scores_per_s']:.3g} keyword scores/s (~{r['streams_equivalent']} streams)")
EOF
log "done"
