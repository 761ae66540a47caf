"""The only coupling between the streams protocol and the serving engine.

Keywords are enrolled in the engine's index, every one at the same low ``floor`` threshold, and
each stream is decoded once by the service's own ``Spotter`` and decision code through its public
calls: ``create_stream``, ``accept_waveform``, ``input_finished`` and ``decode_streams``. Each
emitted event keeps its peak score, so the result at any stricter threshold ``t`` is the events
scoring at least ``t`` (a candidate that stays above the floor between two peaks over ``t`` is one
event here and could be two at ``t``: the sweep slightly undercounts false alarms at strict
thresholds; the refractory second bounds the effect).

Several proxy kinds (text, TTS) are enrolled side by side in one tenant, with id ranges per kind,
so the audio is embedded once for all of them. That equals one tenant per kind because this
engine decides every keyword on its own; an engine where enrolled keywords compete must give each
kind its own tenant (two streams per audio) instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.engine.spotter import Enrollment, Spotter
from openkws.text.tts import ProxyTTS

TENANT = "eval-streams"
ID_BLOCK = 100_000  # keyword ids of proxy kind n: n * ID_BLOCK + 1 ...


@dataclass(frozen=True)
class Event:
    keyword: str
    score: float
    start_s: float  # the detected window's span
    end_s: float
    decided_s: float  # stream time of the audio that completed the decision


def decode_events(spotter: Spotter, audio: np.ndarray, kinds: Sequence[str]) -> dict[str, list[Event]]:
    """Decode one stream through the engine -> events per proxy kind (by keyword id range).

    ``competition="all"``: text and TTS proxies of every keyword share one tenant (one decode for
    both), so the service's default ``best`` would make the two kinds compete; each keyword is
    scored on its own, as in the figures of docs/BENCHMARKS.md."""
    stream = spotter.create_stream(tenant=TENANT, competition="all")
    stream.accept_waveform(audio)
    stream.input_finished()
    out: dict[str, list[Event]] = {k: [] for k in kinds}
    for d in spotter.decode(stream).detections:
        out[kinds[d.keyword_id // ID_BLOCK]].append(
            Event(d.text, float(d.score), d.start_ms / 1e3, d.end_ms / 1e3, d.decided_ms / 1e3)
        )
    return out


def decode_from_onsets(
    spotter: Spotter, audio: np.ndarray, onsets_s: Sequence[float], kinds: Sequence[str]
) -> dict[str, list[Event]]:
    """The "no leading pad" reading of a positive stream: each clip decoded as a stream of its own that
    starts at the clip's speech onset (no audio ahead of the keyword, as a satellite's audio starts at
    the wake word) and runs to the next onset; event times are in the whole stream's time."""
    from dataclasses import replace

    from openkws.constants import SAMPLE_RATE

    cuts = [int(round(t * SAMPLE_RATE)) for t in onsets_s] + [len(audio)]
    out: dict[str, list[Event]] = {k: [] for k in kinds}
    for a, b in zip(cuts, cuts[1:], strict=False):
        shift = a / SAMPLE_RATE
        for kind, events in decode_events(spotter, audio[a:b], kinds).items():
            out[kind] += [
                replace(e, start_s=e.start_s + shift, end_s=e.end_s + shift, decided_s=e.decided_s + shift)
                for e in events
            ]
    return out


def tts_proxies(spotter: Spotter, texts: Sequence[str], cache: Path) -> np.ndarray:
    """The service's ``proxy: "tts"`` proxies (espeak-ng/flite renditions), cached per model."""
    path = Path(cache) / f"tts_proxies_{spotter.acoustic_fingerprint[:12]}.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            known = dict(zip(z["texts"].tolist(), z["proxies"], strict=True))
    missing = [t for t in texts if t not in known]
    if missing:
        tts = ProxyTTS()
        path.parent.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(tqdm(missing, desc="tts proxies", unit="kw")):
            known[t] = spotter.acoustic_proxy(tts.renditions(t))
            if j % 25 == 24 or j == len(missing) - 1:  # resumable
                keys = sorted(known)
                np.savez(path, texts=np.array(keys), proxies=np.stack([known[k] for k in keys]))
    return np.stack([known[t] for t in texts]).astype(np.float32)


def enroll(
    spotter: Spotter, texts: Sequence[str], kinds: Sequence[ProxyMode], floor: float, cache: Path
) -> None:
    """Enroll ``texts`` once per proxy kind (``text``/``tts``/``both``) at ``floor``: the index holds
    exactly these afterwards (:meth:`Spotter.enroll`, as the service enrolls)."""
    phonemes = [spotter.pronounce(t).phonemes for t in texts]
    acoustic = tts_proxies(spotter, texts, cache) if any(k != "text" for k in kinds) else None
    spotter.enroll(
        [
            Enrollment(
                n * ID_BLOCK + i + 1,
                TENANT,
                t,
                phonemes[i],
                floor,
                kind,
                None if acoustic is None or kind == "text" else acoustic[i],
            )
            for n, kind in enumerate(kinds)
            for i, t in enumerate(texts)
        ],
        replace=True,
    )
