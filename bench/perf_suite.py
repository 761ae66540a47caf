"""Every figure of the "Streams per core" section of docs/BENCHMARKS.md, in one command:

    python -m bench.perf_suite                       # ~25 min on 2 busy cores; add --service for wall-clock runs
    python -m bench.perf_suite --only doc            # re-render the section from bench/out/perf.json

Steps (each writes its part of ``bench/out/perf.json``; ``--only a,b`` reruns some of them):

* ``int8``: the int8 variant of the model (``openkws.training.quantize``, static, embedding + acoustic
  frames, calibrated on training-split TTS clips) unless ``--int8`` names one;
* ``accuracy``: ``openkws eval pairs`` of both on the recorded Asterisk set and the synthetic dev split;
* ``profile``: per-component CPU (``bench.profile_frontend``) of both, streams decoded alone and batched;
  and the speech-embedding batching sweep;
* ``speed``: single-core RTF, 100 keywords, streamed in 100 ms chunks, float and int8, side by side
  with openWakeWord's 5 models in the same run (``bench.speed``);
* ``scaling``: engine CPU with 10 vs 10,000 keywords (``bench.service_bench.keyword_scaling``);
* ``gating``: CPU with VAD off/on on 100% and 25% speech (``bench.gating``);
* ``latency``: the algorithmic delay (engine alone, no load): end of the spoken keyword to the
  emitting chunk, at the default 240 ms decision hold and at 0;
* ``service`` (only with ``--service``): the real server under websocket load (``bench.service_bench``),
  continuous speech without VAD and 25% speech with VAD, with the machine load beside each level.

CPU figures are process CPU time, which a shared machine inflates far less than wall time; the load
average is recorded with every step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from openkws.constants import SAMPLE_RATE

OUT = Path("bench/out")
STEPS = ("int8", "accuracy", "profile", "speed", "scaling", "gating", "latency", "service", "doc")
ASTERISK = Path("data/eval/asterisk/manifest.csv")  # `openkws data asterisk`
SYNTH = Path("data/synth/manifest.csv")  # `openkws data synth`


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ensure_int8(model: Path, out: Path, manifest: Path) -> Path:
    if (out / "model.json").is_file():
        return out
    from openkws.training.quantize import quantize_model

    quantize_model(model, out, ("speech_embedding", "acoustic_frames"), "static", manifest, clips=150)
    return out


def snapshot(manifest: Path, split: str) -> Path:
    """The ``split`` rows of a manifest, paths made absolute, frozen in bench/out: the synthetic
    corpus may still be growing, and both models must be scored on the same clips."""
    import csv

    out = OUT / f"perf_{manifest.stem}_{split}.csv"
    with manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == split]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text"])
        w.writeheader()
        for r in rows:
            w.writerow({"path": str((manifest.parent / r["path"]).resolve()), "text": r["text"]})
    return out


def accuracy(models: dict[str, Path], asterisk: Path, synth: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    dev = snapshot(synth, "dev") if synth.is_file() else synth
    for label, model in models.items():
        for set_name, manifest, split in (("asterisk", asterisk, None), ("synthetic_dev", dev, None)):
            if not manifest.is_file():
                res.setdefault(label, {})[set_name] = {"error": f"{manifest} missing"}
                continue
            out = OUT / "perf_eval" / f"{label}-{set_name}"
            cmd = [
                sys.executable,
                "-m",
                "openkws.cli",
                "eval",
                "pairs",
                "--model",
                str(model),
                "--manifest",
                str(manifest),
                "--out",
                str(out),
            ] + (["--split", split] if split else [])
            subprocess.run(cmd, check=True, capture_output=True)
            doc = json.loads((out / "pairs.json").read_text())
            sysres = next(iter(doc["systems"].values()))
            res.setdefault(label, {})[set_name] = {
                k: {
                    "eer": round(v["eer"], 5),
                    "auc": round(v["auc"], 5),
                    "n_pos": v["n_pos"],
                    "n_neg": v["n_neg"],
                }
                for k, v in sysres.items()
            }
    return res


def write_wav(path: Path, audio: np.ndarray) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path


def algorithmic_latency(model: Path, holds: tuple[int, ...] = (240, 0)) -> list[dict[str, Any]]:
    """Engine alone on 60 s of speech in 100 ms chunks: the end of each spoken keyword to the end
    of the chunk whose decode emitted it (the delay no hardware removes)."""
    from bench.speech_audio import CLIP_KEYWORDS, phrases, speech_clip_marked
    from openkws.engine.spotter import DetectorConfig, Spotter

    audio, marks = speech_clip_marked(60.0)
    rows = []
    texts = CLIP_KEYWORDS + phrases(100 - len(CLIP_KEYWORDS), seed=1)
    for hold in holds:
        sp = Spotter.load(model, config=DetectorConfig(hold_ms=hold), device="cpu")
        prons = [sp.pronounce(t) for t in texts]
        sp.index.replace_all(
            sp.entries_from(
                [(i + 1, "default", p.text, p.phonemes, sp.default_threshold) for i, p in enumerate(prons)]
            )
        )
        s = sp.create_stream()
        dets = []
        step = SAMPLE_RATE // 10
        for i in range(0, len(audio), step):
            s.accept_waveform(audio[i : i + step])
            dets += [(d, 1000.0 * (i + step) / SAMPLE_RATE) for d in sp.decode(s).detections]
        lat = []
        for text, end in marks:
            m = [t for d, t in dets if d.text == text and abs(d.end_ms / 1000 - end) <= 2.0]
            if m:
                lat.append(m[0] - 1000 * end)
        rows.append(
            {
                "hold_ms": hold,
                "keywords_spoken": len(marks),
                "detected": len(lat),
                "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
                "p95_ms": round(float(np.percentile(lat, 95)), 1) if lat else None,
            }
        )
    return rows


def run_json(cmd: list[str], out: Path) -> Any:
    log(" ".join(cmd))
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    )
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf_suite", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("src/openkws/models/default"))
    ap.add_argument("--int8", type=Path, default=Path("runs/quant/default-int8"))
    ap.add_argument(
        "--manifest", type=Path, default=SYNTH, help="synthetic manifest (int8 calibration, dev split)"
    )
    ap.add_argument("--asterisk", type=Path, default=ASTERISK)
    ap.add_argument("--out", type=Path, default=OUT / "perf.json")
    ap.add_argument("--doc", type=Path, default=Path("docs/BENCHMARKS.md"))
    ap.add_argument("--only", default=None, help=f"comma list of steps: {','.join(STEPS)}")
    ap.add_argument("--service", action="store_true", help="also the wall-clock service benchmark (long)")
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test of the command)")
    a = ap.parse_args(argv)
    steps = set(a.only.split(",")) if a.only else set(STEPS) - ({"service"} if not a.service else set())
    unknown = steps - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    doc: dict[str, Any] = json.loads(a.out.read_text()) if a.out.is_file() else {}
    doc.setdefault("machine", {"cpus": os.cpu_count(), "gpu_lent": False})
    secs = 5.0 if a.quick else 10.0
    model = a.model
    int8 = a.int8

    def save(step: str, value: Any) -> None:
        doc[step] = {
            "load_average_before": before,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "result": value,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=2) + "\n")

    models = {"float": model, "int8": int8}
    for step in STEPS:
        if step not in steps or step == "doc":
            continue
        before = load()
        log(f"{step} (load {before})")
        if step == "int8":
            save(step, {"dir": str(ensure_int8(model, int8, a.manifest))})
        elif step == "accuracy":
            save(step, accuracy(models, a.asterisk, a.manifest))
        elif step == "profile":
            from bench.profile_frontend import profile, speech_audio, sweep_embedding

            audio = speech_audio(secs)
            runs = [
                dict(profile(m, audio, 32, 100, mode), variant=label)
                for label, m in models.items()
                for mode in ("single", "batched")
            ]
            sweeps = [
                dict(r, variant=label)
                for label, m in models.items()
                for r in sweep_embedding(m, 32, 3 if a.quick else 5)
            ]
            save(step, {"runs": runs, "embedding_sweep": sweeps})
        elif step == "speed":
            from bench.speech_audio import speech_clip
            from bench.speed import run_speed

            wav = write_wav(OUT / "perf_speech_30s.wav", speech_clip(30.0))
            systems = ["openkws", f"openkws@{int8}", "openwakeword"]
            counts = {"openkws": (100,), f"openkws@{int8}": (100,), "openwakeword": (5,)}
            save(
                step,
                {
                    "audio": "30 s of continuous synthesized speech (espeak-ng phrases, 0.4 s gaps)",
                    "chunk_ms": 100,
                    "systems": run_speed(
                        systems,
                        wav,
                        30.0,
                        1 if a.quick else 3,
                        str(model),
                        False,
                        counts=counts,
                        chunk_ms=100,
                    ),
                },
            )
        elif step == "scaling":
            from bench.service_bench import keyword_scaling
            from bench.speech_audio import speech_clip

            audio = speech_clip(secs)
            save(
                step,
                {label: keyword_scaling(m, audio, 16, 1 if a.quick else 4) for label, m in models.items()},
            )
        elif step == "gating":
            out = OUT / "perf_gating.json"
            save(
                step,
                run_json(
                    [
                        sys.executable,
                        "-m",
                        "bench.gating",
                        "--model",
                        str(int8),
                        "--streams",
                        "16",
                        "--seconds",
                        "30" if a.quick else "60",
                        "--out",
                        str(out),
                    ],
                    out,
                ),
            )
        elif step == "latency":
            save(step, algorithmic_latency(int8))
        elif step == "service":
            rows = {}
            for name, extra in (
                ("speech_vad_off", ["--vad", "off", "--levels", "32,64,100,150,200"]),
                (
                    "speech25_vad_on",
                    ["--vad", "on", "--speech-fraction", "0.25", "--levels", "100,200,300,400"],
                ),
            ):
                out = OUT / f"perf_service_{name}.json"
                rows[name] = run_json(
                    [
                        sys.executable,
                        "-m",
                        "bench.service_bench",
                        "--model",
                        str(int8),
                        "--skip-scaling",
                        "--seconds",
                        "8" if a.quick else "20",
                        "--out",
                        str(out),
                        *extra,
                    ],
                    out,
                )
            save(step, rows)
    if "doc" in steps:
        from bench.perf_doc import update_doc

        update_doc(a.doc, doc)
        log(f"wrote the section of {a.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
