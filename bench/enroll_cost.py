"""Enrollment cost of acoustic proxies, plain and whitened (issue 26): p50/p95 seconds per keyword.

    python bench/enroll_cost.py --model src/openkws/models/default --keywords 20

Times what the service does per new ``tts``/``both`` keyword: synthesize the 8 proxy renditions,
embed them (whitened: at the 3 speeds of TEMPO_FACTORS) and, for ``both``, add the text proxy. The
runs use copies of the model directory without and with ``whitening.npz`` (`openkws export whiten`).
Quote the load (`uptime`) beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from openkws.engine.acoustic_proxy import combine_proxies
from openkws.engine.spotter import Spotter
from openkws.text.tts import ProxyTTS

WORDS = ("hey jarvis", "turn on the lights", "play music", "stop", "okay computer", "goodbye", "password",
         "conference", "thank you", "call waiting", "seven", "november", "pause", "record", "lights off",
         "open the door", "next track", "volume up", "good morning", "alpha")  # fmt: skip


def time_mode(sp: Spotter, mode: str, words: list[str]) -> list[float]:
    tts, out = ProxyTTS(), []
    for w in words:
        t0 = time.perf_counter()
        pron = sp.pronounce(w)
        acoustic = sp.acoustic_proxy(tts.renditions(pron.text), mode)
        text = (
            sp.embed_phoneme_ids([sp.g2p.inventory.encode(list(pron.phonemes))])[0]
            if mode == "both"
            else None
        )
        combine_proxies(text, acoustic, mode)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--keywords", type=int, default=20)
    a = ap.parse_args()
    from openkws.training.export import write_whitening

    words = list(WORDS[: a.keywords])
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs: dict[str, Path] = {}
        for label, modes in (("plain", ()), ("whitened", ("tts", "both"))):  # whatever --model ships
            dirs[label] = Path(tmp) / label
            shutil.copytree(a.model, dirs[label])
            write_whitening(dirs[label], modes)
        for label, d in dirs.items():
            sp = Spotter.load(d, device="cpu", threads=1)
            time_mode(sp, "tts", words[:2])  # warm-up
            for mode in ("tts", "both"):
                s = np.asarray(time_mode(sp, mode, words))
                res[f"{label} {mode}"] = {"p50_s": round(float(np.percentile(s, 50)), 3),
                                          "p95_s": round(float(np.percentile(s, 95)), 3), "n": len(s)}  # fmt: skip
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
