#!/usr/bin/env bash
# Every dev-set figure of one exported model (issue 11's ablation row), in one command:
#   bench/model_eval.sh MODEL_DIR OUT_DIR [--streams]
# Synthetic first (these are what a model is chosen on), then recorded speech (evaluation only):
#   synth/        pairs on 1,500 clips of the corpus's test split (unseen words, held-out voices)
#   probe.json    running speech and cut phrases of the test split against 42 keywords
#   user_*.json   the new-user test (5 keywords, 6 TTS voices) at the default sensitivity
#   asterisk/     pairs on the 341 Asterisk prompts, and FRR by keyword length
#   streams/      (--streams) `openkws eval streams` on the Asterisk prompts, text and TTS proxies
# Each step is skipped when its output exists, so an interrupted run resumes.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bench/model_eval.sh MODEL_DIR OUT_DIR [--streams]" >&2
  exit 2
fi
model=$1 out=$2 streams=${3:-}
if [ ! -f "$model/model.json" ]; then
  echo "model_eval: $model is not an exported model directory (no model.json)" >&2
  exit 2
fi
mkdir -p "$out"
# shellcheck source=bench/_step.sh
source "$(dirname "$0")/_step.sh"
step synth-pairs "$out/synth/pairs.json" \
  openkws eval pairs --model "$model" --manifest data/synth/manifest.csv --split test --max-clips 1500 --out "$out/synth"
step probe "$out/probe.json" \
  openkws eval background-probe --model "$model" --manifest data/robust/probe_manifest.csv --out "$out/probe.json"
for proxy in text tts; do
  step "user-$proxy" "$out/user_$proxy.json" python -m bench.user_test --model "$model" --proxy $proxy --out "$out/user_$proxy.json"
done
step asterisk-pairs "$out/asterisk/pairs.json" \
  openkws eval pairs --model "$model" --manifest data/eval/asterisk/manifest.csv --out "$out/asterisk"
openkws eval length-frr "$out/asterisk/scores.csv" --manifest data/eval/asterisk/manifest.csv \
  > "$out/asterisk/length_frr.txt"
if [ "$streams" = "--streams" ]; then
  step streams "$out/streams/streams.json" openkws eval streams --model "$model" --out "$out/streams"
fi
