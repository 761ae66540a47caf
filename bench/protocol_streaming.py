"""Run one system over every evaluation stream and score it with the wake-word protocol.

One call of :func:`run_system` = one process: the detector is built once, enrolled with every
keyword it supports (score-trace systems: both sets at once, since a keyword's trace does not depend
on what else is enrolled; pocketsphinx: one decoder per set, because its keyphrases share a search
beam), and each stream is processed once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import EvalData, length_groups, make_templates
from bench.detectors import ScoreTrace, make_detector
from bench.streaming import ScoredStream, detection_delays, summarize, sweep

log = logging.getLogger("bench.streaming")
TARGETS = (0.5, 1.0)


def _sets_for(det: Any, data: EvalData) -> dict[str, list[str]]:
    sets = {"a": [k for k in data.set_a if det.supports(k)]}
    if det.open_vocabulary and data.set_b:
        sets["b"] = list(data.set_b)
    return {k: v for k, v in sets.items() if v}


def run_system(system: str, data: EvalData, options: dict[str, Any]) -> dict[str, Any]:
    """Process all streams with ``system``; returns the JSON-ready result (curves + summaries)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t_start = time.perf_counter()
    det = make_detector(system, **options.get(system, {}))
    sets = _sets_for(det, data)
    result: dict[str, Any] = {
        "system": system,
        "version": det.version,
        "install": det.install,
        "open_vocabulary": det.open_vocabulary,
        "data": data.describe(),
        "sets": {},
    }
    if not sets:
        return result
    passes: list[list[str]] = (
        [sorted({k for v in sets.values() for k in v}, key=str)]
        if system != "pocketsphinx"
        else list(sets.values())
    )
    templates = None
    if det.needs_templates:
        t0 = time.perf_counter()
        templates = make_templates(sorted({k for v in sets.values() for k in v}), data.template_voices)
        result["template_synthesis_s"] = round(time.perf_counter() - t0, 2)
        result["template_voices"] = data.template_voices
    outputs: dict[str, list[ScoredStream]] = {name: [] for name in sets}
    audio_s = compute_s = 0.0
    for keywords in passes:
        det.enroll(keywords, None if templates is None else {k: templates[k] for k in keywords})
        wanted = [name for name, kws in sets.items() if set(kws) <= set(keywords)]
        todo = [st for st in data.streams if any(n in st.sets for n in wanted)]
        for i, st in enumerate(todo):
            audio = st.audio()
            t0 = time.perf_counter()
            out = det.process(audio)
            dt = time.perf_counter() - t0
            audio_s += len(audio) / 16_000
            compute_s += dt
            log.info(
                "%s: stream %d/%d %s (%.0f s audio) in %.1f s",
                system,
                i + 1,
                len(todo),
                st.name,
                len(audio) / 16_000,
                dt,
            )
            for name in wanted:
                if name not in st.sets:
                    continue
                kws = sets[name]
                out_k = (
                    ScoreTrace(out.times, {k: out.scores[k] for k in kws})
                    if isinstance(out, ScoreTrace)
                    else out
                )
                outputs[name].append(ScoredStream(st.name, st.duration_s, st.occurrences, out_k))
    for name, kws in sets.items():
        curve = sweep(outputs[name], kws)
        summary = summarize(curve, TARGETS, length_groups(kws))
        j = curve.operating_point(1.0)
        if j is not None:
            d = detection_delays(outputs[name], kws, float(curve.thresholds[j]))
            if d.size:
                summary["1"]["delay_s"] = {
                    "p50": float(np.percentile(d, 50)),
                    "p95": float(np.percentile(d, 95)),
                    "n": int(d.size),
                }
        result["sets"][name] = {"keywords": kws, "curve": curve.to_json(), "summary": summary}
    result["processing"] = {
        "audio_s": round(audio_s, 1),
        "compute_s": round(compute_s, 1),
        "rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "note": "wall time of the accuracy passes (threads as configured); the speed protocol has the controlled figures",
    }
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    det.close()
    return result


def plot_det(results: dict[str, dict[str, Any]], set_name: str, path: Path, title: str) -> Path | None:
    """DET curves (FRR against FA/h) of every system that ran on ``set_name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.streaming import DetCurve

    fig, ax = plt.subplots(figsize=(7, 5))
    drawn = 0
    for system, res in sorted(results.items()):
        s = res.get("sets", {}).get(set_name)
        if not s:
            continue
        c = DetCurve.from_json(s["curve"])
        fa, frr = c.fa_per_hour, c.frr
        order = np.lexsort((frr, fa))
        fa, frr = fa[order], np.minimum.accumulate(frr[order])
        ax.step(fa, 100 * frr, where="post", label=f"{system} (FRR@1FA/h {100 * c.frr_at(1.0):.1f}%)")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    for t in TARGETS:
        ax.axvline(t, color="grey", ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlim(0, None)
    ax.set_ylim(0, 100)
    ax.set(xlabel="false alarms per hour", ylabel="false reject rate (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
