"""Long negative audio (false alarms per hour) and keyword test streams with ground-truth times.

Running text comes from the apt ``fortunes`` quotations, split into sentences and normalised to
lowercase words (exactly what the TTS is given). A sentence is dropped if it contains any
evaluation keyword (:mod:`openkws.training.data.keywords`) or any held-out test word
(:func:`openkws.training.data.splits.is_test_word`), so no evaluated keyword is ever spoken in it.
Speech is rendered by the held-out voices (Piper joe, the held-out espeak-ng identities, flite
awb), one voice per sentence, RMS-levelled, joined with 0.15-0.9 s pauses.

``build_negatives`` writes ``negatives/clean/neg_NN.wav`` (speech only) and
``negatives/noisy/neg_NN.wav`` (the same speech plus white/pink/brown noise at the SNR stated in
``negatives/manifest.csv``: ``path,condition,noise,snr_db,duration,sentences``).

``build_keyword_streams`` writes ``streams/stream_NN.wav`` and ``streams/ground_truth.csv``
(``stream,keyword,start,end,voice,snr_db,background``; times in seconds, from the trimmed
keyword audio). Each stream has one background (``speech``: running text by held-out voices
plus light noise, or ``noise``: pink/brown noise) and one keyword-to-background SNR (keyword
power over the background's mean power): 10 dB and 0 dB by default. ``streams/manifest.csv`` lists
the streams with ``path,background,snr_db,duration,keywords``.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import re
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.text.tts import TTSError, stable_hash
from openkws.training.data.audio import trim_silence, write_wav
from openkws.training.data.augment import add_noise, colored_noise, power
from openkws.training.data.keywords import evaluation_keywords
from openkws.training.data.splits import is_test_word
from openkws.training.data.tts import HELDOUT_VOICES, synthesize

FORTUNES_DIR = Path("/usr/share/games/fortunes")
_SKIP_FILES = {"ascii-art", "art"}  # pictures made of characters, not prose
_SENT_RE = re.compile(r"(?<=[.!?;:])\s+")
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
TARGET_RMS = 0.05  # ~ -26 dBFS per utterance
PIPER_MAX_WORDS = 30  # keeps utterances within Piper's 20 s noise bank
NEGATIVE_SNRS = (20.0, 10.0, 5.0)
STREAM_SNRS = (10.0, 0.0)
NEGATIVE_VOICE_WEIGHTS = {"piper": 0.4, "espeak": 0.45, "flite": 0.15}


def heldout_voices() -> list[str]:
    return sorted(HELDOUT_VOICES)


def _keyword_seqs() -> list[tuple[str, ...]]:
    return [tuple(k.split()) for k in evaluation_keywords()]


def is_clean_sentence(words: Sequence[str], keyword_seqs: Sequence[tuple[str, ...]] | None = None) -> bool:
    """No test word and no evaluation keyword (as a word sequence) anywhere in ``words``."""
    if any(is_test_word(w) for w in words):
        return False
    for kw in keyword_seqs if keyword_seqs is not None else _keyword_seqs():
        n = len(kw)
        if any(tuple(words[i : i + n]) == kw for i in range(len(words) - n + 1)):
            return False
    return True


def fortune_sentences(min_words: int = 5, max_words: int = PIPER_MAX_WORDS) -> list[str]:
    """Clean, keyword-free sentences from the fortunes files, in a fixed order, de-duplicated."""
    if not FORTUNES_DIR.exists():
        raise FileNotFoundError(f"{FORTUNES_DIR} missing; install apt package fortunes")
    kws = _keyword_seqs()
    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix or path.name in _SKIP_FILES or not path.is_file():
            continue  # .dat/.u8 are indexes
        text = path.read_text(encoding="utf-8", errors="ignore")
        for entry in text.split("\n%\n"):
            entry = re.sub(r"\s*--\s*[^\n]*$", "", entry.strip())  # attribution lines
            if not entry.isascii():
                continue
            for sent in _SENT_RE.split(" ".join(entry.split())):
                if re.search(r"\d", sent):
                    continue  # numbers would be expanded by each engine differently
                words = _WORD_RE.findall(sent.lower().replace("-", " "))
                if not (min_words <= len(words) <= max_words):
                    continue
                line = " ".join(words)
                if line in seen or not is_clean_sentence(words, kws):
                    continue
                seen.add(line)
                out.append(line)
    return out


@dataclass(frozen=True)
class _Job:
    text: str
    voice: str
    seed: int


def _speak(job: _Job) -> np.ndarray:

    try:
        wave = trim_silence(synthesize(job.text, job.voice, seed=job.seed), lead_ms=0, tail_ms=0)
    except (TTSError, ValueError):
        return np.zeros(0, np.float32)
    return np.asarray(wave * (TARGET_RMS / (np.sqrt(power(wave)) + 1e-9)), dtype=np.float32)


def _voice_choice(rng: np.random.Generator, voices: Sequence[str]) -> str:
    w = np.array(
        [
            NEGATIVE_VOICE_WEIGHTS.get(v.split(":")[0], 0.1)
            / sum(x.split(":")[0] == v.split(":")[0] for x in voices)
            for v in voices
        ]
    )
    return voices[int(rng.choice(len(voices), p=w / w.sum()))]


_POOLS: dict[int, Pool] = {}


def _render(jobs: list[_Job], workers: int) -> list[np.ndarray]:
    """Render jobs in order; the worker pool is kept for the life of the process (spawn is slow)."""
    if workers <= 1:
        return [_speak(j) for j in jobs]
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = mp.get_context("spawn").Pool(workers)
    return list(pool.imap(_speak, jobs, chunksize=4))


def running_speech(
    sentences: Sequence[str],
    seconds: float,
    rng: np.random.Generator,
    voices: Sequence[str],
    workers: int = 2,
    progress: str | None = None,
    batch: int = 64,
) -> tuple[np.ndarray, int]:
    """Exactly ``seconds`` of continuous speech from random sentences; returns (wave, sentences used).

    Sentences are drawn and rendered in batches until enough audio exists, so the result depends
    only on ``rng``'s state, not on timing or worker count.
    """
    target = int(seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = used = 0
    bar = tqdm(total=round(seconds), unit="s", desc=progress, disable=progress is None)
    while total < target:
        # size the batch from the audio per sentence so far: little is rendered and thrown away
        per_sentence = total / used if used else 3.0 * SAMPLE_RATE
        n_jobs = int(np.clip((target - total) / per_sentence * 1.1 + 2, 2, batch))
        jobs = []
        for _ in range(n_jobs):
            text = sentences[int(rng.integers(len(sentences)))]
            jobs.append(_Job(text, _voice_choice(rng, voices), int(rng.integers(2**31))))
        pauses = rng.uniform(0.15, 0.9, size=n_jobs)
        before = total
        for wave, pause in zip(_render(jobs, workers), pauses, strict=True):
            if not len(wave) or total >= target:
                continue
            gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
            parts += [wave, gap]
            total += len(wave) + len(gap)
            used += 1
        if total == before:
            raise RuntimeError("no sentence could be rendered; check the TTS engines")
        bar.update(min(total, target) // SAMPLE_RATE - bar.n)
    bar.close()
    return np.concatenate(parts)[:target], used


def build_negatives(
    out: Path,
    hours: float = 1.05,
    chunk_minutes: float = 10.0,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> list[dict[str, str]]:
    """Write ≥ ``hours`` of keyword-free running speech, clean and noisy; return the manifest rows."""
    sentences = fortune_sentences()
    voices = heldout_voices()
    n_chunks = int(np.ceil(hours * 60 / chunk_minutes))
    rows: list[dict[str, str]] = []
    colors = ("pink", "white", "brown")
    for k in range(n_chunks):
        rng = np.random.default_rng([seed, stable_hash("negatives", k)])
        wave, used = running_speech(
            sentences,
            chunk_minutes * 60,
            rng,
            voices,
            workers,
            f"negatives {k + 1}/{n_chunks}" if progress else None,
        )
        snr, color = NEGATIVE_SNRS[k % len(NEGATIVE_SNRS)], colors[k % len(colors)]
        noisy = add_noise(wave, colored_noise(len(wave), color, rng), snr)
        for cond, audio, noise, s in (("clean", wave, "none", ""), ("noisy", noisy, color, f"{snr:g}")):
            rel = f"{cond}/neg_{k:02d}.wav"
            write_wav(out / rel, np.clip(audio, -1, 1))
            rows.append(
                {
                    "path": rel,
                    "condition": cond,
                    "noise": noise,
                    "snr_db": s,
                    "duration": f"{len(wave) / SAMPLE_RATE:.2f}",
                    "sentences": str(used),
                }
            )
    _write_csv(out / "manifest.csv", rows)
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def build_keyword_streams(
    out: Path,
    minutes: float = 5.0,
    streams_per_condition: int = 2,
    snrs: Sequence[float] = STREAM_SNRS,
    backgrounds: Sequence[str] = ("speech", "noise"),
    keywords: Sequence[str] | None = None,
    gap_s: tuple[float, float] = (6.0, 14.0),
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    voices: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """Streams with keywords (held-out voices) inserted at known times; returns ground-truth rows."""
    keywords = list(keywords or evaluation_keywords())
    voices = list(voices or heldout_voices())
    sentences = fortune_sentences() if "speech" in backgrounds else []
    truth: list[dict[str, str]] = []
    manifest: list[dict[str, str]] = []
    k = 0
    for background in backgrounds:
        for snr in snrs:
            for _ in range(streams_per_condition):
                rng = np.random.default_rng([seed, stable_hash("stream", k)])
                n = int(minutes * 60 * SAMPLE_RATE)
                if background == "speech":
                    bg, _ = running_speech(
                        sentences,
                        minutes * 60,
                        rng,
                        voices,
                        workers,
                        f"stream {k} background" if progress else None,
                    )
                    bg = add_noise(bg, colored_noise(n, "pink", rng), 30.0)
                else:
                    bg = colored_noise(n, ("pink", "brown")[k % 2], rng) * TARGET_RMS
                mix = bg.astype(np.float32).copy()
                bg_power = power(bg)  # whole-stream level: a keyword landing in a pause is not made quieter
                pos = int(rng.uniform(1.0, 4.0) * SAMPLE_RATE)
                count = 0
                while True:
                    kw = keywords[int(rng.integers(len(keywords)))]
                    voice = voices[int(rng.integers(len(voices)))]
                    wave = trim_silence(
                        synthesize(kw, voice, seed=int(rng.integers(2**31))), lead_ms=0, tail_ms=0
                    )
                    if pos + len(wave) + SAMPLE_RATE > n:
                        break
                    gain = np.sqrt(bg_power * 10 ** (snr / 10) / (power(wave) + 1e-12))
                    mix[pos : pos + len(wave)] += gain * wave
                    rel = f"stream_{k:02d}.wav"
                    truth.append(
                        {
                            "stream": rel,
                            "keyword": kw,
                            "start": f"{pos / SAMPLE_RATE:.3f}",
                            "end": f"{(pos + len(wave)) / SAMPLE_RATE:.3f}",
                            "voice": voice,
                            "snr_db": f"{snr:g}",
                            "background": background,
                        }
                    )
                    count += 1
                    pos += len(wave) + int(rng.uniform(*gap_s) * SAMPLE_RATE)
                peak = float(np.max(np.abs(mix)))
                if peak > 0.99:  # scale the whole stream: SNRs are unchanged
                    mix *= 0.99 / peak
                write_wav(out / f"stream_{k:02d}.wav", mix)
                manifest.append(
                    {
                        "path": f"stream_{k:02d}.wav",
                        "background": background,
                        "snr_db": f"{snr:g}",
                        "duration": f"{n / SAMPLE_RATE:.2f}",
                        "keywords": str(count),
                    }
                )
                k += 1
    _write_csv(out / "ground_truth.csv", truth)
    _write_csv(out / "manifest.csv", manifest)
    return truth
