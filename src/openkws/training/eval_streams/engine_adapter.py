"""The only coupling between the streams protocol and the serving engine.

Keywords are enrolled in the engine's index, every one at the same low ``floor`` threshold, and
each stream is decoded once by the service's own ``Spotter`` and decision code through its public
calls: ``create_stream``, ``accept_waveform``, ``input_finished`` and ``decode_streams``. Each
emitted event keeps its peak score, so the result at any stricter threshold ``t`` is the events
scoring at least ``t`` (a candidate that stays above the floor between two peaks over ``t`` is one
event here and could be two at ``t``: the sweep slightly undercounts false alarms at strict
thresholds; the refractory second bounds the effect).

With ``vad`` each stream gets the service's voice-activity gate (:mod:`openkws.engine.vad`, the
``vad`` argument of ``create_stream`` that the websocket handler passes): the engine sees the gated
segments with their pre-roll, and event times are mapped back to stream time by the gate.

Several proxy kinds (text, TTS) are enrolled side by side in one tenant, with id ranges per kind,
so the audio is embedded once for all of them. That equals one tenant per kind because this
engine decides every keyword on its own; an engine where enrolled keywords compete must give each
kind its own tenant (two streams per audio) instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.engine.acoustic_proxy import TEMPO_FACTORS, combine_proxies
from openkws.engine.calibration import BANK_FILE
from openkws.engine.index import l2_normalize
from openkws.engine.spotter import Enrollment, Spotter
from openkws.engine.vad import VadConfig
from openkws.engine.whitening import Whitening, whitening_from_bank
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


def decode_events(
    spotter: Spotter, audio: np.ndarray, kinds: Sequence[str], vad: VadConfig | None = None
) -> dict[str, list[Event]]:
    """Decode one stream through the engine -> events per proxy kind (by keyword id range).

    ``competition="all"``: text and TTS proxies of every keyword share one tenant (one decode for
    both), so the service's default ``best`` would make the two kinds compete; each keyword is
    scored on its own, as in the figures of docs/BENCHMARKS.md. ``vad``: gate the stream as the
    service does (event times stay in stream time)."""
    stream = spotter.create_stream(tenant=TENANT, competition="all", vad=vad)
    stream.accept_waveform(audio)
    stream.input_finished()
    out: dict[str, list[Event]] = {k: [] for k in kinds}
    for d in spotter.decode(stream).detections:
        out[kinds[d.keyword_id // ID_BLOCK]].append(
            Event(d.text, float(d.score), d.start_ms / 1e3, d.end_ms / 1e3, d.decided_ms / 1e3)
        )
    return out


def decode_from_onsets(
    spotter: Spotter,
    audio: np.ndarray,
    onsets_s: Sequence[float],
    kinds: Sequence[str],
    vad: VadConfig | None = None,
) -> dict[str, list[Event]]:
    """The "no leading pad" reading of a positive stream: each clip decoded as a stream of its own that
    starts at the clip's speech onset (no audio ahead of the keyword, as a satellite's audio starts at
    the wake word) and runs to the next onset; event times are in the whole stream's time."""
    cuts = [int(round(t * SAMPLE_RATE)) for t in onsets_s] + [len(audio)]
    out: dict[str, list[Event]] = {k: [] for k in kinds}
    for a, b in zip(cuts, cuts[1:], strict=False):
        shift = a / SAMPLE_RATE
        for kind, events in decode_events(spotter, audio[a:b], kinds, vad).items():
            out[kind] += [
                replace(e, start_s=e.start_s + shift, end_s=e.end_s + shift, decided_s=e.decided_s + shift)
                for e in events
            ]
    return out


# Proxy kinds: ``text``/``tts``/``both`` as the service enrolls them without a whitening (``tts`` is
# the normalised mean of the 8 proxy voices), and the whitened forms of issue 26
# (openkws.engine.whitening; over the renditions at every TEMPO_FACTORS speed):
# ``tts-white`` = normalize(S^-1 (mu - mu_bg)), ``both-white`` = normalize(text + tts-white),
# ``both-joint`` = normalize(S^-1 ((text + mu) / 2 - mu_bg)).
KINDS = ("text", "tts", "both", "tts-white", "both-white", "both-joint")
WHITENED_KINDS = ("tts-white", "both-white", "both-joint")
# Whitened scores live lower (cosine with a direction away from the speech cluster): their sweeps
# start lower. Measured on the shipped model: positives 0.05-0.35, bank 99th percentile 0.03-0.08.
KIND_FLOORS = {"tts-white": 0.08, "both-joint": 0.08, "both-white": 0.3}


def kind_floor(kind: str, floor: float) -> float:
    return min(floor, KIND_FLOORS.get(kind, floor))


def rendition_means(spotter: Spotter, texts: Sequence[str], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the mean rendition embedding [N, D] (not normalised) at speed 1.0 (the service's plain
    ``tts``) and over every :data:`TEMPO_FACTORS` speed (the whitened set); cached per model."""
    path = Path(cache) / f"tts_means_{spotter.acoustic_fingerprint[:12]}.npz"
    known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            known = {t: (a, b) for t, a, b in zip(z["texts"].tolist(), z["plain"], z["tempo"], strict=True)}
    missing = [t for t in texts if t not in known]
    if missing:
        tts, ap = ProxyTTS(), spotter.acoustic_proxies
        one = TEMPO_FACTORS.index(1.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(tqdm(missing, desc="tts proxies", unit="kw")):
            emb = ap.embeddings(tts.renditions(t), TEMPO_FACTORS)  # rendition-major
            known[t] = (emb[one :: len(TEMPO_FACTORS)].mean(axis=0), emb.mean(axis=0))
            if j % 25 == 24 or j == len(missing) - 1:  # resumable
                keys = sorted(known)
                np.savez(
                    path,
                    texts=np.array(keys),
                    plain=np.stack([known[k][0] for k in keys]),
                    tempo=np.stack([known[k][1] for k in keys]),
                )
    return (
        np.stack([known[t][0] for t in texts]).astype(np.float32),
        np.stack([known[t][1] for t in texts]).astype(np.float32),
    )


def eval_whitening(spotter: Spotter, model_dir: Path) -> Whitening:
    """The model directory's whitening, or one computed from its bank (same as ``openkws export whiten``)."""
    w = spotter.whitening
    return w if w is not None else whitening_from_bank(Path(model_dir) / BANK_FILE)


def kind_proxies(
    kind: str, text: np.ndarray, plain: np.ndarray, tempo: np.ndarray, whitening: Whitening | None
) -> np.ndarray:
    """Proxies [N, D] of one kind from text proxies [N, D] and mean rendition embeddings [N, D]."""
    if kind in ("text", "tts", "both"):
        return combine_proxies(text, l2_normalize(plain), kind)
    if whitening is None:
        raise ValueError(f"proxy kind {kind!r} needs the model's whitening (none given)")
    w = whitening.direction
    if kind == "tts-white":
        return w(tempo)
    if kind == "both-white":
        return combine_proxies(text, w(tempo), "both")
    if kind == "both-joint":
        return w((text + tempo) / 2.0)
    raise ValueError(f"proxy kind {kind!r}; expected one of {KINDS}")


def enroll(
    spotter: Spotter, texts: Sequence[str], kinds: Sequence[str], floor: float, cache: Path, model_dir: Path
) -> None:
    """Enroll ``texts`` once per proxy kind (:data:`KINDS`) at its floor (:func:`kind_floor`): the
    index holds exactly these afterwards (:meth:`Spotter.enroll`, as the service enrolls)."""
    phonemes = [spotter.pronounce(t).phonemes for t in texts]
    text = spotter.keyword_proxies(phonemes)
    plain: np.ndarray | None = None
    tempo: np.ndarray | None = None
    whitening: Whitening | None = None
    rows = []
    for n, kind in enumerate(kinds):
        if kind == "text":
            px = text
        else:
            if plain is None or tempo is None:
                plain, tempo = rendition_means(spotter, texts, cache)
            if kind in WHITENED_KINDS and whitening is None:
                whitening = eval_whitening(spotter, model_dir)
            px = kind_proxies(kind, text, plain, tempo, whitening)
        rows += [
            Enrollment(n * ID_BLOCK + i + 1, TENANT, t, phonemes[i], kind_floor(kind, floor), proxy=px[i])
            for i, t in enumerate(texts)
        ]
    spotter.enroll(rows, replace=True)
