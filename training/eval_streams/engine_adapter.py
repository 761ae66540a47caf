"""The only coupling between the streams protocol and the serving engine.

Keywords are enrolled in the engine's index (one tenant per proxy kind, so text and TTS proxies
never see each other, as two users' vocabularies would not), every one at the same low
``floor`` threshold, and each stream is decoded by the service's own ``Spotter`` and decision code
through its public calls: ``create_stream``, ``accept_waveform``, ``input_finished`` and
``decode_streams``. Each emitted event keeps its peak score, so the result at any stricter
threshold ``t`` is the events scoring at least ``t`` (a candidate that stays above the floor
between two peaks over ``t`` is one event here and could be two at ``t``: the sweep slightly
undercounts false alarms at strict thresholds; the refractory second bounds the effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Event:
    keyword: str
    score: float
    start_s: float  # the detected window's span
    end_s: float
    decided_s: float  # stream time of the audio that completed the decision


def decode_events(spotter: object, audio: np.ndarray, tenants: Sequence[str]) -> dict[str, list[Event]]:
    """Decode one stream once per tenant (batched through the engine) -> events per tenant."""
    streams = [spotter.create_stream(tenant=t) for t in tenants]  # type: ignore[attr-defined]
    for s in streams:
        s.accept_waveform(audio)
        s.input_finished()
    out: dict[str, list[Event]] = {t: [] for t in tenants}
    while any(s.ready() for s in streams):
        live = [s for s in streams if s.ready()]
        for s, r in zip(live, spotter.decode_streams(live), strict=True):  # type: ignore[attr-defined]
            out[s.tenant] += [Event(d.text, float(d.score), d.start_ms / 1e3, d.end_ms / 1e3, d.decided_ms / 1e3)
                              for d in r.detections]
    return out


def tts_proxies(spotter: object, texts: Sequence[str], cache: Path) -> np.ndarray:
    """The service's ``proxy: "tts"`` proxies (espeak-ng/flite renditions), cached per model."""
    from openkws.text.tts import ProxyTTS

    path = Path(cache) / f"tts_proxies_{spotter.acoustic_fingerprint[:12]}.npz"  # type: ignore[attr-defined]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            known = dict(zip(z["texts"].tolist(), z["proxies"], strict=True))
    missing = [t for t in texts if t not in known]
    if missing:
        from tqdm import tqdm

        tts = ProxyTTS()
        for t in tqdm(missing, desc="tts proxies", unit="kw"):
            known[t] = spotter.acoustic_proxy(tts.renditions(t))  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(known)
        np.savez(path, texts=np.array(keys), proxies=np.stack([known[k] for k in keys]))
    return np.stack([known[t] for t in texts]).astype(np.float32)


def enroll(spotter: object, texts: Sequence[str], proxies: dict[str, str], floor: float, cache: Path) -> None:
    """Enroll ``texts`` once per ``{tenant: proxy kind}`` (``text``/``tts``/``both``) at ``floor``."""
    from dataclasses import replace

    from openkws.engine.acoustic_proxy import combine_proxies

    entries = []
    for n, (tenant, kind) in enumerate(proxies.items()):
        rows = []
        for i, t in enumerate(texts):
            p = spotter.pronounce(t)  # type: ignore[attr-defined]
            rows.append((n * 100_000 + i + 1, tenant, t, p.phonemes, floor))
        es = spotter.entries_from(rows)  # type: ignore[attr-defined]
        if kind != "text":
            ac = tts_proxies(spotter, texts, cache)
            es = [replace(e, proxy=combine_proxies(e.proxy, ac[i], kind)) for i, e in enumerate(es)]
        entries += es
    spotter.index.replace_all(entries)  # type: ignore[attr-defined]
