"""Write the benchmark report from ``bench/out/*.json``.

Two outputs from one renderer:

* ``bench/out/REPORT.md`` -- every run, whatever it was (quick, smoke data, untrained model), with
  its numbers, for the developer who ran it;
* ``docs/BENCHMARKS.md`` -- the published page. It carries numbers only from a *publishable* run:
  the full protocol (not ``--quick``), the data layer's evaluation sets, and a trained model. For
  any other run every figure reads "not yet measured", so the docs never show a number that is not
  a benchmark result. Its plots are copied to ``docs/benchmarks/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

NOT_MEASURED = "not yet measured"
SYSTEM_NAMES = {
    "openkws": "openkws",
    "openkws-tts": "openkws (TTS proxies)",
    "openwakeword": "openWakeWord",
    "pocketsphinx": "pocketsphinx (KWS)",
    "efficientword": "EfficientWord-Net",
}
ORDER = ("openkws", "openkws-tts", "openwakeword", "pocketsphinx", "efficientword")
IMG_DIR = Path("docs/benchmarks")


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_results(out: Path) -> dict[str, Any]:
    res: dict[str, Any] = {
        "run": _load(out / "run.json") or {},
        "streaming": {},
        "pairs": {},
        "speed": {},
        "service": None,
    }
    for p in sorted(out.glob("streaming_*.json")):
        r = _load(p)
        res["streaming"][r["system"]] = r
    for p in sorted(out.glob("pairs_*.json")):
        r = _load(p)
        res["pairs"][r["name"]] = r
    res["speed"] = _load(out / "speed.json") or {}
    res["service"] = _load(out / "service.json")
    return res


def publishable(run: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a run may be published in docs/BENCHMARKS.md, and if not, why."""
    why = []
    if not run:
        why.append("no run recorded")
    if run.get("quick"):
        why.append("a --quick run")
    if (run.get("data") or {}).get("source") != "data-layer":
        why.append("not on the data layer's evaluation sets")
    if (run.get("openkws_model") or {}).get("untrained", True):
        why.append("openkws model is an untrained stand-in")
    return not why, why


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _name(s: str) -> str:
    return SYSTEM_NAMES.get(s, s)


def _systems(d: dict[str, Any]) -> list[str]:
    return [s for s in ORDER if s in d] + sorted(s for s in d if s not in ORDER)


class Renderer:
    def __init__(self, res: dict[str, Any], show: bool, img: str) -> None:
        self.res, self.show, self.img = res, show, img

    def v(self, text: str) -> str:
        return text if self.show else NOT_MEASURED

    # ------------------------------------------------------------------ figures
    def frr(self, system: str, set_name: str, target: str, mode: str = "frr") -> float | None:
        s = self.res["streaming"].get(system, {}).get("sets", {}).get(set_name)
        return None if not s else s["summary"][target][mode]

    def speed_row(self, system: str, n: int) -> dict[str, Any] | None:
        for row in self.res["speed"].get("systems", {}).get(system, []):
            if row.get("keywords") == n and "rtf" in row:
                return row
        return None

    def targets(self) -> list[tuple[str, str, str]]:
        rows = []
        ok, oww = self.frr("openkws", "a", "0.5"), self.frr("openwakeword", "a", "0.5")
        if self.show and ok is not None and oww is not None:
            met = ok <= oww + 0.02
            rows.append(("Set (a): FRR at 0.5 FA/h within 2 points of openWakeWord's per-word models",
                         f"openkws {_pct(ok)} vs openWakeWord {_pct(oww)}", "met" if met else "**missed**"))  # fmt: skip
        else:
            rows.append(
                (
                    "Set (a): FRR at 0.5 FA/h within 2 points of openWakeWord's per-word models",
                    NOT_MEASURED,
                    NOT_MEASURED,
                )
            )
        ok1 = self.frr("openkws", "b", "1")
        ps1, ew1 = self.frr("pocketsphinx", "b", "1"), self.frr("efficientword", "b", "1")
        if self.show and None not in (ok1, ps1, ew1):
            met = ok1 < ps1 and ok1 < ew1  # type: ignore[operator]
            rows.append(("Set (b): lower FRR at 1 FA/h than pocketsphinx and EfficientWord-Net",
                         f"openkws {_pct(ok1)}, pocketsphinx {_pct(ps1)}, EfficientWord-Net {_pct(ew1)}",
                         "met" if met else "**missed**"))  # fmt: skip
        else:
            rows.append(
                (
                    "Set (b): lower FRR at 1 FA/h than pocketsphinx and EfficientWord-Net",
                    NOT_MEASURED,
                    NOT_MEASURED,
                )
            )
        k100, o5 = self.speed_row("openkws", 100), self.speed_row("openwakeword", 5)
        if self.show and k100 and o5:
            ratio = o5["rtf"] / k100["rtf"]
            rows.append(("Per-stream CPU at least 2x lower than openWakeWord (openkws with 100 keywords vs its 5 models)",
                         f"openkws {k100['rtf']:.4f} RTF vs openWakeWord {o5['rtf']:.4f} RTF: {ratio:.2f}x",
                         "met" if ratio >= 2.0 else "**missed**"))  # fmt: skip
        else:
            rows.append(
                (
                    "Per-stream CPU at least 2x lower than openWakeWord (openkws with 100 keywords vs its 5 models)",
                    NOT_MEASURED,
                    NOT_MEASURED,
                )
            )
        return rows

    # ------------------------------------------------------------------ sections
    def header(self) -> list[str]:
        run = self.res["run"]
        m = run.get("machine", {})
        ok, why = publishable(run)
        lines = ["# Benchmarks", ""]
        lines += [
            "openkws side by side with the keyword spotters a user would pick instead, on the same audio, in one run "
            "of one command. Every number on this page is written by `bench/report.py` from the JSON that "
            "`python -m bench.run_all` produced; nothing is typed in by hand.",
            "",
        ]
        if not self.show:
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

    def target_section(self) -> list[str]:
        lines = ["## Targets (issue 5)", "", "| target | measured | status |", "| --- | --- | --- |"]
        for t, m, s in self.targets():
            lines.append(f"| {t} | {m} | {s} |")
        return lines + [""]

    def streaming_section(self) -> list[str]:
        st = self.res["streaming"]
        lines = [
            "## Streaming detection (wake-word protocol)",
            "",
            "Command: `python -m bench.run_all --protocols streaming` (part of `make bench`).",
            "",
            "A detection is a hit inside [keyword start, keyword end + 0.5 s]; anything else is a false alarm, "
            "counted over all scored audio (negative and positive streams). FRR is read at the best threshold whose "
            "FA/h is within the budget (a global threshold per system and keyword set; "
            "`frr_linear` in the JSON interpolates the DET curve instead). The delay is algorithmic: from the end of "
            "the keyword to the end of the audio that made the detection fire (compute and queueing excluded).",
            "",
        ]
        for set_name, title in (("a", "Set (a): openWakeWord's five words (all systems)"),
                                ("b", "Set (b): 50 unseen words and phrases (open-vocabulary systems)")):  # fmt: skip
            lines += [
                f"### {title}",
                "",
                "| system | FRR @ 0.5 FA/h | FRR @ 1 FA/h | delay after keyword end at 1 FA/h (p50 / p95) | occurrences | hours scored |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            rows = 0
            for s in _systems(st):
                sm = st[s].get("sets", {}).get(set_name, {}).get("summary")
                if not sm:
                    continue
                rows += 1
                d = sm["1"].get("delay_s")
                delay = self.v(
                    f"{1000 * d['p50']:.0f} / {1000 * d['p95']:.0f} ms (n={d['n']})" if d else "n/a"
                )
                lines.append(f"| {_name(s)} {st[s].get('version', '')} | {self.v(_pct(sm['0.5']['frr']))} | "
                             f"{self.v(_pct(sm['1']['frr']))} | {delay} | {sm['positives']} | {sm['hours']:.2f} |")  # fmt: skip
            if not rows:
                lines.append(f"| all | {NOT_MEASURED} | {NOT_MEASURED} | {NOT_MEASURED} | | |")
            lines.append("")
            if set_name == "b" and rows:
                lines += ["By keyword length, FRR at the threshold chosen for 1 FA/h over the whole set:", ""]
                groups: list[str] = []
                for s in _systems(st):
                    bg = (
                        st[s].get("sets", {}).get("b", {}).get("summary", {}).get("1", {}).get("by_group", {})
                    )
                    groups += [g for g in bg if g not in groups]
                lines += ["| system | " + " | ".join(groups) + " |", "| --- |" + " --- |" * len(groups)]
                for s in _systems(st):
                    bg = st[s].get("sets", {}).get("b", {}).get("summary", {}).get("1", {}).get("by_group")
                    if bg:
                        cells = [
                            self.v(_pct(bg[g]["frr"])) + f" ({bg[g]['positives']})" if g in bg else ""
                            for g in groups
                        ]
                        lines.append(f"| {_name(s)} | " + " | ".join(cells) + " |")
                lines.append("")
            if self.show and self.img and rows:
                lines += [f"![DET curves, set ({set_name})]({self.img}/det_set_{set_name}.png)", ""]
        return lines

    def pairs_section(self) -> list[str]:
        pr = self.res["pairs"]
        lines = [
            "## Pairs (LibriPhrase protocol)",
            "",
            "Command: `python -m bench.run_all --protocols pairs`. Pairs come from the data layer's builder "
            "(`openkws.training.data.pairs.build_pairs`): each clip with its own text (match), a random text more than 2 "
            "phoneme edits away (easy) and the closest text within 2 edits (hard), drawn from every text of the set; "
            "metrics are `openkws.training.evaluate.pair_metrics`. Clips are padded with 0.5 s of silence; each system's "
            "score is its best window on the clip (pocketsphinx: the keyphrase's best margin over its phone loop, per "
            "phone; EfficientWord-Net: best cosine against 4 TTS templates of the text). openWakeWord cannot score "
            "arbitrary text and is absent.",
            "",
        ]
        if not pr:
            return lines + [f"{NOT_MEASURED}.", ""]
        for name, r in pr.items():
            split = f", split `{r['split']}`" if r.get("split") else ""
            lines += [f"### {name}", "", f"Manifest `{r.get('manifest', '?')}`{split}.", "",
                      "| system | easy EER | easy AUC | easy AP | hard EER | hard AUC | hard AP | pairs (+/easy/hard) |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for s in _systems(r["systems"]):
                x = r["systems"][s]
                if "error" in x:
                    lines.append(f"| {_name(s)} | failed: {x['error']} | | | | | | |")
                    continue
                e, h = x["metrics"].get("easy", {}), x["metrics"].get("hard", {})
                c = x["pairs"]
                cells = []
                for m in (e, h):
                    cells += [
                        self.v(_pct(m.get("eer"))),
                        self.v(f"{m['auc']:.3f}" if m else "n/a"),
                        self.v(f"{m['ap']:.3f}" if m else "n/a"),
                    ]
                lines.append(
                    f"| {_name(s)} | " + " | ".join(cells) + f" | {c['positive']}/{c['easy']}/{c['hard']} |"
                )
            if self.show and self.img:
                lines += ["", f"![pairs {name}]({self.img}/pairs_{name}.png)"]
            lines.append("")
        return lines

    def speed_section(self) -> list[str]:
        sp = self.res["speed"]
        lines = [
            "## Speed and cost",
            "",
            "Command: `python -m bench.run_all --protocols speed` (or `python -m bench.speed --system NAME "
            "--keywords N --audio WAV`). Each (system, keyword count) runs in its own process pinned to one CPU core, "
            "on the same audio; the real-time factor (RTF = compute time / audio time, lower is better) is the median "
            "of the repetitions, peak RSS is the process's maximum resident memory.",
            "",
        ]
        systems = sp.get("systems", {})
        if not systems:
            return lines + [f"{NOT_MEASURED}.", ""]
        reps = sp.get("reps", "?")
        lines.append(
            f"Audio: {sp.get('audio_s', '?')} s of a negative stream; {reps} repetition{'s' if reps != 1 else ''} "
            "per figure, each in a fresh process, interleaved across systems."
        )
        lines.append("")
        counts = sorted({row["keywords"] for rows in systems.values() for row in rows})
        lines += ["Single-thread RTF by number of keywords enrolled:", "",
                  "| system | " + " | ".join(str(n) for n in counts) + " |", "| --- |" + " --- |" * len(counts)]  # fmt: skip
        for s in _systems(systems):
            cells = []
            for n in counts:
                row = next((r for r in systems[s] if r.get("keywords") == n), None)
                if row is None:
                    cells.append("-")
                elif "rtf" not in row:
                    cells.append("failed")
                else:
                    mark = "*" if row.get("copies_of_bundled_models") else ""
                    cells.append(self.v(f"{row['rtf']:.4f}{mark}"))
            lines.append(f"| {_name(s)} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "\\* openWakeWord has five models; larger counts load copies of them (the cost of that many per-word models).",
            "",
        ]
        lines += [
            "| system | peak RSS (100 keywords; openWakeWord: 5) | enroll 100 keywords | add one keyword |",
            "| --- | --- | --- | --- |",
        ]
        for s in _systems(systems):
            row = self.speed_row(s, 5 if s == "openwakeword" else 100)
            if row is None:
                continue
            add = row.get("add_keyword") or {}
            if add.get("median_s") is not None:
                add_txt = self.v(f"{1000 * add['median_s']:.1f} ms") + f" ({add['what']})"
                if add.get("tts_for_4_clips_median_s") is not None:
                    tts_ms = 1000 * add["tts_for_4_clips_median_s"]
                    add_txt += "; synthesizing the 4 clips took " + self.v(f"{tts_ms:.0f} ms")
            else:
                add_txt = add.get("documented", "")
            rss, enroll = self.v(f"{row['peak_rss_mib']:.0f} MiB"), self.v(f"{row['enroll_s']:.2f} s")
            lines.append(f"| {_name(s)} | {rss} | {enroll} | {add_txt} |")
        lines.append("")
        k100, k1 = self.speed_row("openkws", 100), self.speed_row("openkws", 1)
        if k100:
            lines += [
                "Ratio of each peer's RTF to openkws' (above 1: openkws is cheaper):",
                "",
                "| peer | configuration | ratio |",
                "| --- | --- | --- |",
            ]
            for s, n, ref, label in (("openwakeword", 5, k100, "its 5 models vs openkws with 100 keywords"),
                                     ("pocketsphinx", 100, k100, "100 keywords each"),
                                     ("efficientword", 100, k100, "100 keywords each"),
                                     ("pocketsphinx", 1, k1, "1 keyword each"),
                                     ("efficientword", 1, k1, "1 keyword each")):  # fmt: skip
                row = self.speed_row(s, n)
                if row and ref:
                    ratio = self.v(f"{row['rtf'] / ref['rtf']:.2f}x")
                    lines.append(f"| {_name(s)} | {label} | {ratio} |")
            lines.append("")
        return lines

    def service_section(self) -> list[str]:
        sv = self.res["service"]
        lines = ["## openkws service: concurrency and latency", "",
                 "From `bench/service_bench.py` (the service engineer's), which `run_all` calls with the same model: real "
                 "websocket clients on 127.0.0.1 each sending speech paced in real time, at increasing numbers of "
                 "concurrent streams; detection latency is the arrival of a detection minus the wall time the client "
                 "sent the audio that completed the scored window.", ""]  # fmt: skip
        if not sv or sv.get("status") != "ok":
            why = (sv or {}).get("status", "not run")
            return lines + [f"{NOT_MEASURED} ({why}).", ""]
        r = sv.get("result", {})
        lines.append(f"Command: `python {sv.get('command', '-m bench.service_bench')}`.")
        lines.append("")
        best = r.get("max_realtime_streams_p95_le_500ms")
        lines.append(
            f"- Concurrent real-time streams sustained with p95 latency <= 500 ms on 2 cores: **{self.v(str(best))}**."
        )
        ks = r.get("keyword_scaling") or {}
        if ks:
            lines.append(f"- Engine CPU per audio second, 10 vs 10,000 keywords enrolled: {self.v(str(ks.get('cpu_s_per_audio_s_10')))} vs "
                         f"{self.v(str(ks.get('cpu_s_per_audio_s_10000')))} (ratio {self.v(str(ks.get('ratio_10000_vs_10')))}).")  # fmt: skip
        en = r.get("enrollment") or {}
        if en:
            lines.append(f"- Enrolling a keyword over HTTP ({en.get('keywords')} one by one): p50 {self.v(str(en.get('p50_ms')) + ' ms')}, "
                         f"p95 {self.v(str(en.get('p95_ms')) + ' ms')}.")  # fmt: skip
        levels = r.get("streams") or []
        if levels:
            lines += ["", "| streams | detection latency p50 | p95 | server CPU RTF per stream | errors | p95 <= 500 ms |",
                      "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for lv in levels:
                lines.append(f"| {lv.get('streams')} | {self.v(str(lv.get('p50_ms_end')) + ' ms')} | {self.v(str(lv.get('p95_ms_end')) + ' ms')} | "
                             f"{self.v(str(lv.get('server_cpu_rtf_per_stream')))} | {self.v(str(lv.get('errors')))} | {self.v('yes' if lv.get('pass') else 'no')} |")  # fmt: skip
        lines.append("")
        return lines

    def published_section(self) -> list[str]:
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

    def systems_section(self) -> list[str]:
        from bench.detectors import DETECTORS  # noqa: F401  (import check only)

        st = self.res["streaming"]
        lines = [
            "## Systems and how they were run",
            "",
            "| system | version | install (offline) |",
            "| --- | --- | --- |",
        ]
        for s in _systems(st):
            lines.append(f"| {_name(s)} | {st[s].get('version', '?')} | {st[s].get('install', '')} |")
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

    def reproduce_section(self) -> list[str]:
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

    def render(self) -> str:
        parts = (self.header() + self.target_section() + self.streaming_section() + self.pairs_section()
                 + self.speed_section() + self.service_section() + self.systems_section()
                 + self.published_section() + self.reproduce_section())  # fmt: skip
        return "\n".join(parts).rstrip() + "\n"


def write_report(out: Path, doc: Path) -> tuple[Path, Path]:
    """Write ``out/REPORT.md`` (this run, numbers shown) and ``doc`` (numbers only if publishable)."""
    res = load_results(out)
    report = out / "REPORT.md"
    report.write_text(Renderer(res, show=True, img=".").render())
    ok, _ = publishable(res["run"])
    img = ""
    if ok:
        dest = doc.parent / "benchmarks"
        dest.mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy2(png, dest / png.name)
        img = "benchmarks"
    doc.parent.mkdir(parents=True, exist_ok=True)
    from bench.perf_doc import keep_section  # sections other commands write (perf suite, streams, ...) stay

    old = doc.read_text() if doc.is_file() else ""
    doc.write_text(keep_section(Renderer(res, show=ok, img=img).render(), old))
    return report, doc
