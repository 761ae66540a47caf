"""The prose sections of the benchmark report: the run (machine, data, load), the systems and how
they ran, figures quoted from elsewhere, and how to reproduce the page."""

from __future__ import annotations

from bench.report_view import NOT_MEASURED, View, display_name, in_order, publishable


def header(view: View) -> list[str]:
    run = view.res["run"]
    m = run.get("machine", {})
    ok, why = publishable(run)
    lines = ["# Benchmarks", ""]
    lines += [
        "openkws side by side with the keyword spotters a user would pick instead, on the same audio, in one run "
        "of one command. Every number on this page is written by `bench/report.py` from the JSON that "
        "`python -m bench.run_all` produced; nothing is typed in by hand.",
        "",
    ]
    if not view.show:
        lines += [
            f"> **Status: {NOT_MEASURED}.** No publishable run yet (needs the full protocol on the data layer's "
            "evaluation sets with a trained model). "
            + (
                f"The latest run recorded was {'; '.join(why)}, so its numbers stay in `bench/out/REPORT.md` and are not shown here."
                if run
                else ""
            ),
            "",
        ]
    lines += ["## Run", ""]
    if run:
        lines += [
            f"- Date: {run.get('started', '?')}; git `{run.get('git', '?')}`; wall time {run.get('wall_s', 0) / 60:.1f} min.",
            f"- Command: `{run.get('command', '')}`",
            f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB RAM, "
            f"{m.get('os', '?')}, Python {m.get('python', '?')}.",
            f"- openkws model: `{(run.get('openkws_model') or {}).get('dir', '?')}`"
            + (
                " (**untrained stand-in**: harness check only)"
                if (run.get("openkws_model") or {}).get("untrained")
                else ""
            ),
        ]
        la, lb = run.get("loadavg_start"), run.get("loadavg_end")
        if la and lb:
            busy = max(la[0], lb[0]) > (m.get("cores") or 1)
            lines.append(
                f"- Load average (1/5/15 min) at start {la}, at end {lb}"
                + (": **the machine was busy with other work; timings are inflated**." if busy else ".")
            )
        d = run.get("data")
        if d:
            lines.append(
                f"- Streams: {d['source']}, {d['streams']} streams, {d['negative_hours']:.2f} h negative "
                f"({', '.join(d.get('negative_conditions', []))}), {d['total_hours']:.2f} h in all, "
                f"{d['positives']} keyword occurrences at SNR {d['snr_db']} dB."
            )
            for name, ps in (d.get("per_set") or {}).items():
                lines.append(
                    f"  - set ({name}): {ps['positives']} occurrences over {ps['hours']:.2f} h of audio in {ps['streams']} streams."
                )
            if d.get("template_voices"):
                lines.append(
                    f"- EfficientWord-Net templates: {', '.join(d['template_voices'])} (held-out voices; they may also speak in the test streams)."
                )
    else:
        lines.append(f"- {NOT_MEASURED}")
    lines.append("")
    return lines


def systems_section(view: View) -> list[str]:
    from bench.detectors import DETECTORS  # noqa: F401  (import check only)

    st = view.res["streaming"]
    lines = [
        "## Systems and how they were run",
        "",
        "| system | version | install (offline) |",
        "| --- | --- | --- |",
    ]
    for s in in_order(st):
        lines.append(f"| {display_name(s)} | {st[s].get('version', '?')} | {st[s].get('install', '')} |")
    if not st:
        lines.append(f"| all | {NOT_MEASURED} | see `bench/detectors/*.py` |")
    lines += [
        "",
        "- **openkws**: the service's own `Spotter` (offline whole-file path, the same engine as streaming); per-keyword "
        "scores are recorded at every window the engine evaluates.",
        '- **openkws (TTS proxies)**: the same engine with each keyword enrolled as the service\'s `proxy: "tts"` '
        "does it: the mean acoustic embedding of 8 espeak-ng/flite renditions instead of the text encoder's proxy.",
        "- **pocketsphinx**: keyword-spotting search with its bundled US English model; words missing from its dictionary "
        "get openkws' G2P pronunciation. Its threshold is swept over a grid of log10 thresholds *per phone* "
        "(keyphrase threshold = 10^(x * phones)); every grid point is decoded in the same pass by giving the decoder "
        "one copy of each keyphrase per threshold (the threshold does not steer its search). Set (a) and set (b) use "
        "separate decoders. The coarse grid makes its DET curve a staircase.",
        "- **openWakeWord**: `pyopen-wakeword` with its five bundled models, one score per 80 ms.",
        "- **EfficientWord-Net**: its ResNet-50 (fp32 ONNX) on 1.5 s windows every 0.5 s; each keyword enrolled with 4 clips "
        "synthesized by held-out TTS voices that do not speak in the test streams; score = its own (cos + 1) / 2 "
        "against the best template. Phrases longer than 1.5 s cannot fit its window.",
        "- Trace-scored systems (openkws, openWakeWord, EfficientWord-Net) share one decision rule: a detection fires at "
        "the first frame above threshold, and the same keyword is then silent for 1 s.",
        "",
    ]
    return lines


def published_section(view: View) -> list[str]:
    return [
        "## Published figures of systems that cannot run here (quoted, not measured)",
        "",
        "These come from each project's own documentation (via `shared/METHOD.md`); they were measured on other "
        "data and other machines and are **not comparable** with the tables above.",
        "",
        "| system | published figure | source |",
        "| --- | --- | --- |",
        "| sherpa-onnx keyword spotter (3.3M-parameter zipformer transducer, text-defined) | 86% recall at 0.025 FA/h on 20 commands over 40 h of GigaSpeech test audio; 98.7% at 0.6 FA/h after fine-tuning on the commands | icefall `egs/gigaspeech/KWS/RESULTS.md` |",
        "| Porcupine | 2.7% miss rate at 1 false alarm per 10 hours; PocketSphinx misses 52% on the same benchmark | Picovoice wake-word benchmark |",
        "| openWakeWord | target: under 5% false rejects at under 0.5 FA/h | openWakeWord README |",
        "| PhonMatchNet (LibriPhrase pairs) | EER 2.80% easy, 18.82% hard | PhonMatchNet paper |",
        "| SLiCK (LibriPhrase pairs) | EER 11.1% hard | SLiCK paper |",
        "| ADML (LibriPhrase pairs) | EER 1.33% easy | ADML paper |",
        "",
        "Neither sherpa-onnx's keyword-spotting models (not on any package registry) nor Porcupine (needs an online "
        "access key) can run on the offline benchmark machine.",
        "",
    ]


def reproduce_section(view: View) -> list[str]:
    return [
        "## Reproduce",
        "",
        "```sh",
        "make setup                          # system + Python dependencies (bench extra included)",
        "pip install --no-deps EfficientWord-Net==1.0.5",
        "make data                           # the data layer's evaluation sets",
        "make bench                          # python -m bench.run_all: every protocol, this page regenerated",
        "python -m bench.run_all --quick     # minutes: smoke set, fewer keyword counts (numbers stay in bench/out)",
        "```",
        "",
    ]
