"""One word apart (issue 21): does a sentence that differs from an enrolled phrase by one word fire it?

Enrolled together through the service's registry (default sensitivity, or ``--threshold``):
"turn on the lights", "stop the music", "open the door", "start the timer". Each is attacked by
sentences one word away ("turn off the lights", "please start the music", "close the door", "stop
the timer") spoken by 8 TTS voices (espeak-ng and flite, as in ``bench.user_test``); the
keyword's own sentence is spoken too, so a model that fires on nothing cannot pass.

Run: ``python -m bench.one_word_apart --model DIR [--threshold 0.65] [--out runs/one_word_apart.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.user_test import speak

PAIRS = (  # (enrolled keyword, its own sentence, a sentence one word apart)
    ("turn on the lights", "turn on the lights", "turn off the lights"),
    ("stop the music", "please stop the music", "please start the music"),
    ("open the door", "open the door", "close the door"),
    ("start the timer", "start the timer now", "stop the timer now"),
)
VOICES = (
    "espeak:en-us", "espeak:en-gb-x-rp", "espeak:en-us+f3", "espeak:en-us+m7",
    "flite:slt", "flite:rms", "flite:awb", "flite:kal",
)  # fmt: skip


def run(model: Path, threshold: float | None = None, proxy: str = "text") -> dict[str, object]:
    from openkws.engine.spotter import Spotter
    from openkws.keywords.registry import EnrollItem, KeywordRegistry
    from openkws.keywords.sensitivity import Sensitivity
    from openkws.keywords.store import KeywordStore

    sp = Spotter.load(model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        store = KeywordStore(f"sqlite:///{tmp}/kw.db")
        reg = KeywordRegistry(store, sp, sensitivity=Sensitivity.load(model, sp))
        reg.enroll("default", [EnrollItem(k, threshold, None, proxy) for k, _, _ in PAIRS])  # type: ignore[arg-type]

    def fired(text: str, voice: str) -> set[str]:
        stream = sp.create_stream()
        stream.accept_waveform(speak(text, voice))
        stream.input_finished()
        return {d.text for d in sp.decode(stream).detections}

    rows = {}
    for kw, own, apart in PAIRS:
        hits = sum(kw in fired(own, v) for v in VOICES)
        false = sum(kw in fired(apart, v) for v in VOICES)
        rows[kw] = {"own_sentence": own, "own_hits": hits, "one_word_apart": apart, "apart_fires": false}
    n = len(VOICES) * len(PAIRS)
    return {
        "model": str(model),
        "setting": f"raw threshold {threshold}" if threshold is not None else "default sensitivity",
        "proxy": proxy,
        "voices": list(VOICES),
        "pairs": rows,
        "own_hit_share": sum(r["own_hits"] for r in rows.values()) / n,  # type: ignore[misc]
        "apart_fire_share": sum(r["apart_fires"] for r in rows.values()) / n,  # type: ignore[misc]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("src/openkws/models/default"))
    ap.add_argument(
        "--threshold", type=float, default=None, help="raw cosine threshold (default: sensitivity)"
    )
    ap.add_argument("--proxy", choices=("text", "tts", "both"), default="text")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = run(a.model, a.threshold, a.proxy)
    for kw, r in res["pairs"].items():  # type: ignore[union-attr]
        print(
            f"{kw!r}: own sentence {r['own_hits']}/8, {r['one_word_apart']!r} fires it {r['apart_fires']}/8"
        )
    print(f"own {res['own_hit_share']:.0%}, one word apart {res['apart_fire_share']:.0%} ({res['setting']})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
