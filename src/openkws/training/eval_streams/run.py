"""Run every system over the protocol's streams, with per-stream event caches (resumable reruns).

openkws runs through its engine (:mod:`.engine_adapter`). Peer detectors are the benchmarks' business:
``bench/streams_peers.py`` passes them in (``run_streams(cfg, peers={name: factory})``), so the
package never imports the benchmarks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.engine.decision import DecisionMode
from openkws.engine.spotter import DetectorConfig, Spotter
from openkws.engine.vad import VadConfig, VadGate
from openkws.settings import packaged_model_dir
from openkws.text import Pronunciation
from openkws.training.data.audio import read_wav
from openkws.training.eval_streams.bank_scores import bank_calibrated
from openkws.training.eval_streams.build import DEFAULT_NEGATIVES, Clip, Stream, build
from openkws.training.eval_streams.calibration_check import calibration_report
from openkws.training.eval_streams.conditions import CONDITIONS
from openkws.training.eval_streams.engine_adapter import (
    Event,
    decode_events,
    decode_from_onsets,
    enroll,
    kind_floor,
)
from openkws.training.eval_streams.report import StreamsReport, write_outputs
from openkws.training.eval_streams.scoring import Scores, score_stream, summarize

log = logging.getLogger("openkws.eval_streams")
FLOOR = 0.4  # enrollment threshold of the sweep: far below any operating point of the shipped model
PROXY_KINDS: tuple[ProxyMode, ...] = ("text", "tts")
# A peer detector: (keyword texts, cache folder) -> a function from stream audio to its events.
PeerFactory = Callable[[Sequence[str], Path], Callable[[np.ndarray], list[Event]]]


@dataclass
class StreamsConfig:
    manifest: Path
    model: Path = field(default_factory=packaged_model_dir)
    out: Path = Path("runs/eval/streams")
    cache: Path = Path("data/cache/eval_streams")
    conditions: tuple[str, ...] = CONDITIONS
    negatives: tuple[str, ...] = DEFAULT_NEGATIVES
    proxies: tuple[ProxyMode, ...] = PROXY_KINDS
    tts_minutes: float = 30.0
    floor: float = FLOOR
    seed: int = 0
    threads: int = 1
    cached_only: bool = False  # report from the per-stream events already computed (partial runs)
    no_leading_pad: bool = False  # also report openkws with each clip's audio starting at its onset
    cohort: bool = False  # engine option: cohort-normalised scores (issue 21, row N)
    decision: DecisionMode = "hold"  # engine option: decision rule (issue 21, row D)
    bank_sweep: bool = False  # also sweep each kind in bank-predicted FA/h (`<name>@bank`, .bank_scores)
    vad: bool = False  # engine option: the service's voice-activity gate on every stream (issue 24)


def _cached_events(
    path: Path,
    streams: Sequence[Stream],
    systems: Sequence[str],
    run: Callable[[np.ndarray, Stream], dict[str, list[Event]]],
    desc: str,
    cached_only: bool = False,
) -> dict[str, dict[str, list[Event]]]:
    """``{system: {stream: events}}``, one JSON line per stream appended as it finishes."""
    done: dict[str, dict[str, list[Event]]] = {s: {} for s in systems}
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            for sys_name, evs in rec["events"].items():
                if sys_name in done:
                    done[sys_name][rec["stream"]] = [Event(**e) for e in evs]
    todo = [] if cached_only else [s for s in streams if any(s.name not in done[n] for n in systems)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for st in tqdm(todo, desc=desc, unit="stream"):
            res = run(read_wav(st.path), st)
            for n in systems:
                done[n][st.name] = res[n]
            f.write(
                json.dumps({"stream": st.name, "events": {n: [asdict(e) for e in res[n]] for n in systems}})
                + "\n"
            )
            f.flush()
    return done


def _phones(spotter_or_g2p: Callable[[str], Pronunciation], texts: Sequence[str]) -> dict[str, int]:
    out = {}
    for t in texts:
        ph = spotter_or_g2p(t).phonemes
        out[t] = sum(1 for p in ph if p != "|")
    return out


def run_streams(cfg: StreamsConfig, peers: Mapping[str, PeerFactory] | None = None) -> StreamsReport:
    """Build (or reuse) the streams, score openkws (each proxy kind) and the ``peers``; returns the report."""
    t0 = time.perf_counter()
    clips, streams = build(cfg.manifest, cfg.cache, cfg.conditions, cfg.negatives, cfg.tts_minutes, cfg.seed)
    texts = sorted({c.text for c in clips})
    engine = DetectorConfig(cohort=cfg.cohort, decision=cfg.decision)
    spotter = Spotter.load(cfg.model, config=engine, device="cpu", threads=cfg.threads)
    key = f"{spotter.spec.model_version}_{spotter.acoustic_fingerprint[:8]}_{spotter.sessions.spec.files['text'].sha256[:8]}"
    key += ("_cohort" if cfg.cohort else "") + ("" if cfg.decision == "hold" else f"_{cfg.decision}")
    key += "_vad" if cfg.vad else ""  # gated events are another engine's: their own cache file
    vad = VadConfig() if cfg.vad else None  # the service's default gate (OPENKWS_VAD=on)
    kinds = list(cfg.proxies)
    names = [f"openkws-{k}" for k in kinds]
    enroll(spotter, texts, kinds, cfg.floor, cfg.cache, cfg.model)
    stem = cfg.cache / "events" / f"{Path(streams[0].path).parent.parent.name}_{key}_f{cfg.floor:g}.jsonl"

    def _run(audio: np.ndarray, _: Stream) -> dict[str, list[Event]]:
        by_kind = decode_events(spotter, audio, kinds, vad)
        return {f"openkws-{k}": v for k, v in by_kind.items()}

    order = [s for s in streams if s.condition == "negative"] + [
        s for s in streams if s.condition != "negative"
    ]
    events = _cached_events(stem, order, names, _run, "openkws", cfg.cached_only)
    if cfg.no_leading_pad:
        events.update(_no_leading_pad(spotter, kinds, stem, streams, events, cfg.cached_only, vad))
    if cfg.bank_sweep:
        events.update(bank_calibrated(spotter, cfg.model, events, dict(zip(names, kinds, strict=True))))
    for peer, factory in (peers or {}).items():
        events.update(_peer_events(peer, factory, clips, order, cfg))
    phones = _phones(spotter.pronounce, texts)
    systems: dict[str, dict[str, object]] = {}
    scores: dict[str, Scores] = {}
    for name, per_stream in events.items():
        sc = Scores(texts)
        done = [st for st in streams if st.name in per_stream]
        if not any(st.condition == "negative" for st in done):
            log.warning("%s: no negative stream scored yet; left out of the report", name)
            continue
        for st in done:
            score_stream(sc, st, per_stream[st.name])
        scores[name] = sc
        systems[name] = summarize(sc, phones)
        systems[name]["streams_scored"] = f"{len(done)}/{len(streams)}"
    report: StreamsReport = {
        "manifest": str(cfg.manifest),
        "model": str(cfg.model),
        "model_version": spotter.spec.model_version,
        "conditions": list(cfg.conditions),
        "negatives": list(cfg.negatives),
        "floor": cfg.floor,
        "engine": {"cohort": cfg.cohort, "decision": cfg.decision, "vad": cfg.vad},
        "keywords": len(texts),
        "clips": len(clips),
        "positive_hours": round(sum(s.duration_s for s in streams if s.condition != "negative") / 3600, 3),
        "negative_hours": round(sum(s.duration_s for s in streams if s.condition == "negative") / 3600, 3),
        "negative_minutes_by_kind": _minutes_by_kind(streams),
        "systems": systems,
    }
    scored = [st for st in streams if st.name in events[names[0]]]  # partial (--cached-only) runs
    cal = calibration_report(
        spotter,
        cfg.model,
        scores,
        scored,
        texts,
        dict(zip(names, kinds, strict=True)),
        {k: kind_floor(k, cfg.floor) for k in kinds},
    )
    if cal:
        report["calibration"] = cal
    if vad is not None:
        report["vad"] = gate_share(scored, vad)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    write_outputs(report, scores, phones, cfg.out)
    return report


def gate_share(streams: Sequence[Stream], vad: VadConfig) -> dict[str, float]:
    """Share of each condition's audio (and of all) that the gate passes to the engine: the decode
    work VAD saves. The gate alone (microseconds per 30 ms frame), on the same audio as the decode."""
    fed: dict[str, float] = {"all": 0.0}
    total: dict[str, float] = {"all": 0.0}
    for st in streams:
        gate = VadGate(vad)
        audio = read_wav(st.path)
        n = len(gate.push(audio)) + len(gate.flush())
        for c in (st.condition, "all"):
            fed[c] = fed.get(c, 0.0) + n
            total[c] = total.get(c, 0.0) + len(audio)
    return {c: round(fed[c] / total[c], 4) for c in total if total[c]}


def _minutes_by_kind(streams: Sequence[Stream]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in streams:
        for a, b, kind, _ in s.spans:
            out[kind] = out.get(kind, 0.0) + (b - a) / 60
    return {k: round(v, 1) for k, v in out.items()}


def _peer_events(
    peer: str, factory: PeerFactory, clips: Sequence[Clip], streams: Sequence[Stream], cfg: StreamsConfig
) -> dict[str, dict[str, list[Event]]]:
    """A peer's events per stream (cached like openkws' own; ``cached_only`` builds no detector)."""
    texts = sorted({c.text for c in clips})
    runner = (lambda a: []) if cfg.cached_only else factory(texts, cfg.cache)
    path = cfg.cache / "events" / f"{Path(streams[0].path).parent.parent.name}_{peer}.jsonl"
    return _cached_events(path, streams, [peer], lambda a, _: {peer: runner(a)}, peer, cfg.cached_only)


NO_LEAD = "[no leading pad]"


def _no_leading_pad(
    spotter: Spotter,
    kinds: Sequence[str],
    stem: Path,
    streams: Sequence[Stream],
    events: dict[str, dict[str, list[Event]]],
    cached_only: bool,
    vad: VadConfig | None = None,
) -> dict[str, dict[str, list[Event]]]:
    """``openkws-<kind>[no leading pad]``: positives decoded from each clip's onset
    (:func:`decode_from_onsets`), negatives as in the padded run (they have no clips)."""
    names = [f"openkws-{k}{NO_LEAD}" for k in kinds]

    def _run(audio: np.ndarray, st: Stream) -> dict[str, list[Event]]:
        by_kind = decode_from_onsets(spotter, audio, [p.start_s for p in st.placed], kinds, vad)
        return {f"openkws-{k}{NO_LEAD}": v for k, v in by_kind.items()}

    positives = [s for s in streams if s.condition != "negative"]
    path = stem.with_name(stem.stem + "_nolead.jsonl")
    out = _cached_events(path, positives, names, _run, "openkws, no leading pad", cached_only)
    negatives = {s.name for s in streams if s.condition == "negative"}
    for k, name in zip(kinds, names, strict=True):
        out[name].update({n: ev for n, ev in events[f"openkws-{k}"].items() if n in negatives})
    return out
