"""A synthetic keyword set for ``openkws eval streams``: the keyword texts of a manifest rendered by
the evaluation TTS voices (one voice per text, fixed seed), so stream figures can be judged without
recorded speech (issue 21: choices are made on synthetic data only).

    python -m bench.synth_keywords --manifest data/eval/asterisk/manifest.csv --out runs/synth_kw
    openkws eval streams --manifest runs/synth_kw/manifest.csv --negatives tts --negatives music
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from openkws.training.data.audio import trim_silence, write_wav
from openkws.training.data.tts import synthesize
from openkws.training.eval_streams.sources import EVAL_TTS_VOICES


def render(manifest: Path, out: Path, seed: int = 0) -> Path:
    """Render each distinct text of ``manifest`` once; returns the new manifest (path,text)."""
    with manifest.open() as f:
        texts = sorted({r["text"] for r in csv.DictReader(f)})
    rng = np.random.default_rng(seed)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(texts):
        voice = EVAL_TTS_VOICES[int(rng.integers(len(EVAL_TTS_VOICES)))]
        path = out / "clips" / f"{i:04d}.wav"
        if not path.is_file():
            write_wav(path, trim_silence(synthesize(text, voice, seed=seed + i), 50, 50))
        rows.append((f"clips/{path.name}", text))
    dest = out / "manifest.csv"
    with dest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text"])
        w.writerows(rows)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=Path("data/eval/asterisk/manifest.csv"))
    ap.add_argument("--out", type=Path, default=Path("runs/synth_kw"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(render(a.manifest, a.out, a.seed))


if __name__ == "__main__":
    main()
