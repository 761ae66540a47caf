#!/usr/bin/env bash
# One row of issue 21's ablation table for an exported model, in one command:
#   bench/stream_rows.sh MODEL_DIR OUT_DIR [--tts-streams]
#   streams/        `openkws eval streams` on the Asterisk dev prompts (recorded: evaluation only)
#   streams_tts/    (--tts-streams) the same on held-out-voice TTS keyword clips (synthetic)
#   asterisk/       pairs on the Asterisk prompts (easy/hard EER)
#   user_*.json     the new-user test at the default sensitivity, text and TTS proxies
#   one_word_apart.json  sentences one word from an enrolled phrase, 8 voices
# Each step is skipped when its output exists, so an interrupted run resumes.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bench/stream_rows.sh MODEL_DIR OUT_DIR [--tts-streams]" >&2
  exit 2
fi
model=$1 out=$2 tts=${3:-}
if [ ! -f "$model/model.json" ]; then
  echo "stream_rows: $model is not an exported model directory (no model.json)" >&2
  exit 2
fi
mkdir -p "$out"
# shellcheck source=bench/_step.sh
source "$(dirname "$0")/_step.sh"
step one-word-apart "$out/one_word_apart.json" python -m bench.one_word_apart --model "$model" --out "$out/one_word_apart.json"
for proxy in text tts; do
  step "user-$proxy" "$out/user_$proxy.json" python -m bench.user_test --model "$model" --proxy $proxy --out "$out/user_$proxy.json"
done
step asterisk-pairs "$out/asterisk/pairs.json" \
  openkws eval pairs --model "$model" --manifest data/eval/asterisk/manifest.csv --out "$out/asterisk"
step streams "$out/streams/streams.json" openkws eval streams --model "$model" --out "$out/streams"
if [ "$tts" = "--tts-streams" ]; then
  step streams-tts "$out/streams_tts/streams.json" openkws eval streams --model "$model" \
    --manifest data/eval/synth_kw/manifest.csv --negatives tts --negatives music --out "$out/streams_tts"
fi
