"""Evaluation audio for the streaming protocol: streams, ground truth and keyword sets.

Two sources, one shape (:class:`EvalData`):

* the data layer's evaluation streams (long negative TTS audio, positive streams with keywords
  inserted at known times at 10 and 0 dB SNR, a ground-truth CSV, ``keywords_bench.txt``), read by
  :func:`load_data_layer` when they exist; the full benchmark requires them;
* :func:`build_smoke_set`, a few minutes built here from the same TTS voices, for ``--quick``
  runs and CI smoke tests while the data layer's sets are absent. It is never used for published
  figures: results made from it are labelled ``source: smoke``.

Keyword set (a) is openWakeWord's five bundled words; set (b) is the data layer's 50 unseen
keywords (``training/data/keywords_bench.txt``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.streaming import Occurrence

SAMPLE_RATE = 16_000
SET_A: tuple[str, ...] = ("alexa", "hey jarvis", "hey mycroft", "hey rhasspy", "okay nabu")  # openWakeWord's
# smoke runs: one benchmark keyword of each length (1-4 words)
SMOKE_SET_B: tuple[str, ...] = ("penguin", "hey captain", "play some jazz", "where are my keys")
SNRS_DB: tuple[float, ...] = (10.0, 0.0)
SMOKE_POSITIVE_VOICES = ("piper:joe", "espeak:en-us+f3", "flite:awb")

# Background speech for the smoke set: plain sentences without any benchmark keyword.
_SMOKE_TEXT = (
    "the weather was mild for most of the week and the river stayed calm",
    "she carried the boxes up the stairs before the visitors arrived",
    "a small bakery on the corner sells bread every morning at seven",
    "most of the students finished the exam well before the deadline",
    "the train left the station a few minutes later than planned",
    "he wrote a long letter to his brother about the new house",
    "they planted tomatoes and beans along the fence behind the garage",
    "the museum opens its new exhibition on the first day of spring",
    "our neighbours painted their front door a bright shade of green",
    "after dinner we walked along the beach until the sun went down",
    "the committee will publish its report at the end of the month",
    "several birds were singing in the trees near the old bridge",
)


@dataclass
class Stream:
    """One evaluation stream: a WAV file (16 kHz mono) and the keywords spoken in it."""

    name: str
    path: Path
    duration_s: float
    kind: str  # "negative" | "positive"
    occurrences: list[Occurrence] = field(default_factory=list)
    snr_db: float | None = None
    sets: tuple[str, ...] = ("a", "b")  # the keyword sets this stream is scored for

    def audio(self) -> np.ndarray:
        import soundfile as sf

        x, sr = sf.read(str(self.path), dtype="float32", always_2d=False)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{self.path}: {sr} Hz; evaluation streams must be {SAMPLE_RATE} Hz")
        return x if x.ndim == 1 else x.mean(axis=1)


@dataclass
class EvalData:
    streams: list[Stream]
    set_a: list[str]
    set_b: list[str]
    template_voices: list[str]
    source: str  # "data-layer" | "smoke"
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def negative_hours(self) -> float:
        return sum(s.duration_s for s in self.streams if s.kind == "negative") / 3600.0

    @property
    def total_hours(self) -> float:
        return sum(s.duration_s for s in self.streams) / 3600.0

    def describe(self) -> dict[str, object]:
        per_set = {
            name: {
                "streams": sum(name in s.sets for s in self.streams),
                "hours": round(sum(s.duration_s for s in self.streams if name in s.sets) / 3600.0, 4),
                "positives": sum(
                    o.keyword in kws for s in self.streams if name in s.sets for o in s.occurrences
                ),
            }
            for name, kws in (("a", set(self.set_a)), ("b", set(self.set_b)))
        }
        return {
            "source": self.source,
            "streams": len(self.streams),
            "negative_hours": round(self.negative_hours, 4),
            "total_hours": round(self.total_hours, 4),
            "positives": sum(len(s.occurrences) for s in self.streams),
            "snr_db": sorted({s.snr_db for s in self.streams if s.snr_db is not None}),
            "set_a": self.set_a,
            "set_b": self.set_b,
            "template_voices": self.template_voices,
            "per_set": per_set,
            **self.notes,
        }


def words(keyword: str) -> int:
    return len(keyword.split())


def length_groups(keywords: Sequence[str]) -> dict[str, list[str]]:
    """Keywords grouped by number of words: ``{"1 word": [...], "2 words": [...]}``."""
    out: dict[str, list[str]] = {}
    for k in keywords:
        n = words(k)
        out.setdefault(f"{n} word{'s' if n > 1 else ''}", []).append(k)
    return dict(sorted(out.items()))


def heldout_voices() -> list[str]:
    from openkws.training.data.tts import list_voices

    return [v.id for v in list_voices() if v.split == "heldout"]


def smoke_voices(n_positive: int) -> tuple[list[str], list[str]]:
    """Held-out voices for smoke positives (the clearest first) and 4 others for templates."""
    held = heldout_voices()
    clear = [v for v in SMOKE_POSITIVE_VOICES if v in held]
    rest = [v for v in held if v not in clear and "whisper" not in v]
    pos = (clear + rest)[:n_positive]
    return pos, [v for v in rest if v not in pos][:4]


def benchmark_set() -> list[str]:
    """Set (b): the data layer's 50 benchmark keywords (``training/data/keywords_bench.txt``)."""
    from openkws.training.data.keywords import benchmark_keywords

    return list(benchmark_keywords())


# --------------------------------------------------------------------------------------------------
# The data layer's evaluation sets
# --------------------------------------------------------------------------------------------------
NEGATIVE_CONDITIONS = ("clean", "noisy")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def find_data_root(candidates: Sequence[Path]) -> Path | None:
    """The first directory holding the data layer's ``negatives/`` and ``streams/`` manifests."""
    for root in candidates:
        if (root / "negatives" / "manifest.csv").is_file() and (root / "streams" / "manifest.csv").is_file():
            return root
    return None


def load_data_layer(
    root: Path, negatives: Sequence[str] = NEGATIVE_CONDITIONS, extra_set_a: Sequence[Path] = ()
) -> EvalData | None:
    """Read the data layer's evaluation audio under ``root`` (None when it is not built).

    Layout (:mod:`openkws.training.data.streams`): ``negatives/manifest.csv``
    (``path,condition,noise,snr_db,duration,...``) and ``streams/manifest.csv``
    (``path,background,snr_db,duration,keywords``) with ``streams/ground_truth.csv``
    (``stream,keyword,start,end,voice,snr_db,background``). ``negatives`` picks the negative
    conditions to score (``clean`` speech, ``noisy`` = the same speech with added noise).
    ``extra_set_a`` are more directories in the ``streams/`` layout holding set (a) keywords only;
    they are scored for set (a) alone.
    """
    root = Path(root)
    neg_manifest = root / "negatives" / "manifest.csv"
    if not neg_manifest.is_file() or not (root / "streams" / "manifest.csv").is_file():
        return None
    streams: list[Stream] = []
    for row in _read_csv(neg_manifest):
        if row.get("condition", "clean") not in negatives:
            continue
        streams.append(
            Stream(
                f"negatives/{row['path']}",
                root / "negatives" / row["path"],
                float(row["duration"]),
                "negative",
            )
        )
    voices_used: set[str] = set()
    dirs = [(root / "streams", ("a", "b"))] + [(Path(d), ("a",)) for d in extra_set_a]
    for sdir, sets in dirs:
        occ: dict[str, list[Occurrence]] = {}
        for row in _read_csv(sdir / "ground_truth.csv"):
            occ.setdefault(row["stream"], []).append(
                Occurrence(row["keyword"], float(row["start"]), float(row["end"]))
            )
            if row.get("voice"):
                voices_used.add(row["voice"])
        for row in _read_csv(sdir / "manifest.csv"):
            streams.append(
                Stream(
                    name=f"{sdir.name}/{row['path']}",
                    path=sdir / row["path"],
                    duration_s=float(row["duration"]),
                    kind="positive",
                    occurrences=sorted(occ.get(row["path"], []), key=lambda o: o.start_s),
                    snr_db=float(row["snr_db"]) if row.get("snr_db") not in (None, "") else None,
                    sets=sets,
                )
            )
    templates = template_voices(voices_used)
    notes = {"negative_conditions": list(negatives), "root": str(root)}
    return EvalData(streams, list(SET_A), benchmark_set(), templates, "data-layer", notes)


def build_set_a_streams(out: Path, minutes: float = 5.0, per_condition: int = 1, seed: int = 101) -> Path:
    """More set (a) positives, made by the data layer's own stream builder (cached in ``out``).

    The data layer's streams draw from all 55 evaluation keywords, so openWakeWord's five get few
    occurrences; these streams hold only those five, same voices, backgrounds and SNRs.
    """
    if (out / "manifest.csv").is_file() and (out / "ground_truth.csv").is_file():
        return out
    from openkws.training.data.streams import build_keyword_streams

    build_keyword_streams(
        out, minutes=minutes, streams_per_condition=per_condition, keywords=list(SET_A), seed=seed, workers=1
    )
    return out


def template_voices(test_voices: set[str], n: int = 4) -> list[str]:
    """Voices for audio enrollment: held-out voices, preferring ones that speak in no test stream.

    The data layer's streams use every held-out voice, so usually the templates share voices with
    the test audio (which favours the audio-enrolled system); the report says so.
    """
    held = [v for v in heldout_voices() if "whisper" not in v]
    unused = [v for v in held if v not in test_voices]
    return (unused + [v for v in held if v in test_voices])[:n]


# --------------------------------------------------------------------------------------------------
# Smoke set (quick runs and CI)
# --------------------------------------------------------------------------------------------------
def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _speech_bed(seconds: float, voices: Sequence[str], rng: np.random.Generator, seed: int) -> np.ndarray:
    """Running TTS speech from ``voices`` with short pauses, cut to ``seconds``."""
    from openkws.training.data.tts import synthesize

    n = int(seconds * SAMPLE_RATE)
    parts, total, i = [], 0, 0
    while total < n:
        text = _SMOKE_TEXT[int(rng.integers(len(_SMOKE_TEXT)))]
        voice = voices[int(rng.integers(len(voices)))]
        clip = synthesize(text, voice, seed=seed + i) * float(rng.uniform(0.3, 0.6))
        gap = np.zeros(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE), np.float32)
        parts += [clip, gap]
        total += len(clip) + len(gap)
        i += 1
    return np.concatenate(parts)[:n]


def _extent(clip: np.ndarray, floor_db: float = -35.0) -> tuple[int, int]:
    """First and last sample of a clip above ``floor_db`` relative to its peak (10 ms frames)."""
    hop = SAMPLE_RATE // 100
    frames = clip[: len(clip) // hop * hop].reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    on = np.flatnonzero(level > level.max() + floor_db)
    if on.size == 0:
        return 0, len(clip)
    return int(on[0] * hop), int(min(len(clip), (on[-1] + 1) * hop))


def _write(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")


def build_smoke_set(
    out_dir: Path,
    negative_minutes: float = 3.0,
    set_a: Sequence[str] = SET_A,
    set_b: Sequence[str] = SMOKE_SET_B,
    positive_voices: int = 2,
    spacing_s: float = 5.0,
    seed: int = 0,
) -> EvalData:
    """A small evaluation set built with the TTS voices (cached in ``out_dir``).

    Negatives: running speech by training voices over pink noise. Positives: every keyword by
    ``positive_voices`` held-out voices, one every ``spacing_s`` seconds, mixed into the same kind of
    background at each SNR in :data:`SNRS_DB` (keyword power over its extent vs background power
    there). Enrollment templates come from the other held-out voices.
    """
    from openkws.training.data.tts import list_voices, synthesize

    out_dir = Path(out_dir)
    stamp = out_dir / "smoke.json"
    key = {
        "negative_minutes": negative_minutes,
        "set_a": list(set_a),
        "set_b": list(set_b),
        "positive_voices": positive_voices,
        "spacing_s": spacing_s,
        "seed": seed,
        "version": 4,
    }
    pos_voices, templ = smoke_voices(positive_voices)
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return _read_smoke(out_dir, list(set_a), list(set_b), templ)

    rng = np.random.default_rng(seed)
    bed_voices = [v.id for v in list_voices(("espeak", "flite")) if v.split == "train"][::7]

    neg_s = negative_minutes * 60.0
    bed = _speech_bed(neg_s, bed_voices, rng, seed)
    noise = _pink_noise(len(bed), rng) * 0.05
    _write(out_dir / "negatives" / "noisy" / "neg_00.wav", bed + noise)
    _write_rows(out_dir / "negatives" / "manifest.csv", [
        {"path": "noisy/neg_00.wav", "condition": "noisy", "noise": "pink", "snr_db": "", "duration": f"{len(bed) / SAMPLE_RATE:.2f}"}])  # fmt: skip

    keywords = list(set_a) + list(set_b)
    clips = [(kw, v, synthesize(kw, v, seed=seed + 1)) for kw in keywords for v in pos_voices]
    order = rng.permutation(len(clips))
    gt_rows, manifest_rows = [], []
    for k, snr in enumerate(SNRS_DB):
        n = int((len(clips) + 1) * spacing_s * SAMPLE_RATE)
        bg = (
            _speech_bed(n / SAMPLE_RATE, bed_voices, rng, seed + 1000 + int(snr)) + _pink_noise(n, rng) * 0.05
        )
        mix = bg.copy()
        name = f"stream_{k:02d}.wav"
        for slot, c in enumerate(order):
            kw, voice, clip = clips[c]
            a, b = _extent(clip)
            at = int((slot + 0.5) * spacing_s * SAMPLE_RATE + rng.uniform(-1.0, 1.0) * SAMPLE_RATE)
            seg = bg[at + a : at + b]
            gain = np.sqrt(
                (float(np.mean(seg**2)) + 1e-12) * 10 ** (snr / 10) / float(np.mean(clip[a:b] ** 2))
            )
            mix[at : at + len(clip)] += clip * gain
            gt_rows.append({"stream": name, "keyword": kw, "start": f"{(at + a) / SAMPLE_RATE:.3f}",
                            "end": f"{(at + b) / SAMPLE_RATE:.3f}", "voice": voice, "snr_db": f"{snr:g}",
                            "background": "speech"})  # fmt: skip
        peak = float(np.abs(mix).max())
        if peak > 0.99:
            mix *= 0.99 / peak
        _write(out_dir / "streams" / name, mix)
        manifest_rows.append({"path": name, "background": "speech", "snr_db": f"{snr:g}",
                              "duration": f"{n / SAMPLE_RATE:.2f}", "keywords": str(len(order))})  # fmt: skip
    _write_rows(out_dir / "streams" / "ground_truth.csv", gt_rows)
    _write_rows(out_dir / "streams" / "manifest.csv", manifest_rows)
    stamp.write_text(json.dumps({"key": key}))
    return _read_smoke(out_dir, list(set_a), list(set_b), templ)


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _read_smoke(out_dir: Path, set_a: list[str], set_b: list[str], templ: list[str]) -> EvalData:
    data = load_data_layer(out_dir, negatives=("noisy",))
    assert data is not None
    data.set_a, data.set_b, data.template_voices, data.source = set_a, set_b, templ, "smoke"
    return data


def make_templates(
    keywords: Sequence[str], voices: Sequence[str], seed: int = 7
) -> dict[str, list[np.ndarray]]:
    """Enrollment clips for audio-enrolled systems: each keyword by each template voice."""
    from openkws.training.data.tts import synthesize

    return {kw: [synthesize(kw, v, seed=seed) for v in voices] for kw in keywords}
