"""``openkws eval streams`` with peers: pocketsphinx KWS (text-enrolled) and EfficientWord-Net
(TTS templates), through the benchmark's own adapters in :mod:`bench.detectors`.

    python -m bench.streams_peers --peer pocketsphinx --peer efficientword [--doc docs/BENCHMARKS.md]

The benchmark calls the package (:func:`openkws.training.eval_streams.run.run_streams` with
``peers=``), never the reverse: openkws is decoded, cached and scored exactly as by
``openkws eval streams`` (same caches), and the peers are added as systems of the same report.

The streams protocol compares events by score level: an event's level is the strictest threshold
at which the system still reports it. Both peers are run once per stream over a threshold grid
(pocketsphinx: its one-pass keyphrase copies, :class:`SweepEvents`; EfficientWord-Net: its score
trace turned into refractory-debounced events at each grid value), and events of the same keyword
within :data:`MERGE_S` of an event already seen at a stricter value are the same event.
Times are the systems' own report times, so these peers are matched by time
(``[start, end + 0.5 s]`` of the keyword), like the benchmark's streaming protocol.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.detectors import ScoreTrace, SweepEvents, make_detector, trace_events
from openkws.settings import packaged_model_dir
from openkws.training.eval_streams.engine_adapter import KINDS, Event
from openkws.training.eval_streams.report import markdown, write_doc
from openkws.training.eval_streams.run import StreamsConfig, run_streams

PEERS = ("pocketsphinx", "efficientword")
MERGE_S = 0.5
EWN_GRID = tuple(np.round(np.arange(0.60, 1.0001, 0.01), 3).tolist())
PS_GRID = (
    0.0,
    3.0,
    6.0,
    12.0,
    25.0,
    50.0,
    100.0,
)  # log10 per phone, capped at 1e300: 300+ keyphrases need a strict end
EWN_HOP_S = 0.75  # the package's own microphone demo hop
# EfficientWord-Net is audio-enrolled: templates are the service's first 4 TTS proxy voices
TEMPLATE_VOICES = ("espeak:en-us+m3", "espeak:en-us+f2", "flite:slt", "flite:kal")


def nest(per_level: Sequence[tuple[float, dict[str, np.ndarray]]]) -> list[Event]:
    """``[(threshold, {keyword: times})]`` from permissive to strict -> one event per detection,
    scored with the strictest threshold that still reports it.

    >>> ev = nest([(0.1, {"k": np.array([1.0, 5.0])}), (0.2, {"k": np.array([1.1])})])
    >>> [(e.keyword, e.score, e.end_s) for e in ev]
    [('k', 0.2, 1.1), ('k', 0.1, 5.0)]
    """
    events: dict[str, list[Event]] = {}
    for thr, found in reversed(list(per_level)):
        for kw, times in found.items():
            seen = events.setdefault(kw, [])
            for t in np.asarray(times, np.float64):
                if not any(abs(e.end_s - t) <= MERGE_S for e in seen):
                    seen.append(Event(kw, float(thr), float(t), float(t), float(t)))
    return [e for kws in events.values() for e in kws]


def make_runner(name: str, keywords: Sequence[str], cache: Path) -> Callable[[np.ndarray], list[Event]]:
    """A function stream audio -> events for peer ``name`` with every keyword enrolled at once."""
    kws = list(keywords)
    if name == "pocketsphinx":
        det = make_detector("pocketsphinx", grid=PS_GRID)
        det.enroll(kws)

        def run_ps(audio: np.ndarray) -> list[Event]:
            out = det.process(audio)
            assert isinstance(out, SweepEvents)
            return nest(
                [
                    (float(t), {k: out.events.get(k, [np.zeros(0)] * len(out.thresholds))[j] for k in kws})
                    for j, t in enumerate(out.thresholds)
                ]
            )

        return run_ps
    if name == "efficientword":
        det = make_detector("efficientword", hop_s=EWN_HOP_S)
        det.enroll_embeddings(_ewn_templates(det, kws, Path(cache)))

        def run_ewn(audio: np.ndarray) -> list[Event]:
            out = det.process(audio)
            assert isinstance(out, ScoreTrace)
            return nest([(t, {k: trace_events(out.times, out.scores[k], t) for k in kws}) for t in EWN_GRID])

        return run_ewn
    raise ValueError(f"unknown peer {name!r}; choose pocketsphinx or efficientword")


def _ewn_templates(det: object, kws: list[str], cache: Path) -> dict[str, np.ndarray]:
    path = cache / "ewn_templates.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            known = {k: z[k] for k in z.files}
    missing = [k for k in kws if k not in known]
    if missing:
        from tqdm import tqdm

        from openkws.training.data.tts import synthesize

        path.parent.mkdir(parents=True, exist_ok=True)
        for j, k in enumerate(tqdm(missing, desc="efficientword templates", unit="kw")):
            known[k] = np.stack([det.embed(synthesize(k, v, seed=7)) for v in TEMPLATE_VOICES])  # type: ignore[attr-defined]
            if j % 25 == 24 or j == len(missing) - 1:  # resumable
                np.savez(path, **known)
    return {k: known[k] for k in kws}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.streams_peers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", action="append", choices=PEERS, required=True, help="repeatable")
    ap.add_argument("--manifest", type=Path, default=Path("data/eval/asterisk/manifest.csv"))
    ap.add_argument("--model", type=Path, default=packaged_model_dir())
    ap.add_argument("--out", type=Path, default=Path("runs/eval/streams"))
    ap.add_argument("--cache", type=Path, default=Path("data/cache/eval_streams"))
    ap.add_argument("--doc", type=Path, default=None, help="write the tables into this markdown file")
    ap.add_argument("--cached-only", action="store_true", help="report from the events cached so far")
    ap.add_argument(
        "--proxy",
        action="append",
        choices=KINDS,
        default=None,
        help="openkws proxy kinds beside the peers (repeatable; default text and tts)",
    )
    ap.add_argument("--bank-sweep", action="store_true", help="also the bank-calibrated rows (<kind>@bank)")
    a = ap.parse_args(argv)
    cfg = StreamsConfig(
        manifest=a.manifest, model=a.model, out=a.out, cache=a.cache, cached_only=a.cached_only,
        bank_sweep=a.bank_sweep, **({"proxies": tuple(a.proxy)} if a.proxy else {}),
    )  # fmt: skip
    report = run_streams(cfg, peers={p: partial(make_runner, p) for p in a.peer})
    table = markdown(report)
    print(table)
    if a.doc is not None:
        cmd = "python -m bench.streams_peers " + " ".join(
            [f"--peer {p}" for p in a.peer] + [f"--proxy {k}" for k in a.proxy or ()]
            + (["--bank-sweep"] if a.bank_sweep else [])
        )  # fmt: skip
        write_doc(report, table, a.out, a.doc, cmd, a.cached_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
