"""Build a model's calibration bank: engine window embeddings of background audio, int8.

The bank lets the service turn "about N false alarms per hour" into a per-keyword threshold
(:mod:`openkws.engine.calibration`). Its audio is TTS running speech (even-numbered fortune
sentences, voices not used by the streams evaluation), stationary noise and synthetic music, at the
streams protocol's speech level over a quiet floor. Never recorded human speech: recorded speech is
evaluation only, so the calibration it is measured against stays honest.

The windows are the engine's own: each segment is decoded by a :class:`Spotter` stream scoring
windows at every ``stride``-th feature frame (``DetectorConfig.window_stride_frames``), and the
stream's score hook hands over the embeddings of every window length ending there. Only frames with
every window whole are kept (no stream-start clipping, no end-of-stream padding). Each vector is
stored as int8 with one float16 scale (cosine error ~1e-3), so 15 minutes of audio take about 5 MB.

Command: ``openkws eval bank --model models/default`` (also run by ``openkws export``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.calibration import BANK_FILE
from openkws.engine.events import FrameScores
from openkws.engine.spotter import DetectorConfig, Spotter
from openkws.training.data.augment import colored_noise
from openkws.training.eval_streams.sources import concat, eval_sentences, level, tts_segments

log = logging.getLogger("openkws.calibration_bank")
BANK_VOICES = (
    "espeak:en-us+m1",
    "espeak:en-us+m5",
    "espeak:en-gb+f2",
    "espeak:en-gb-scotland+m3",
    "espeak:en-us+klatt2",
    "espeak:en-gb+david",
    "espeak:en-us+Annie",
    "flite:kal",
)
SEGMENT_S = 30.0
MAX_BANK_BYTES = 8 * 2**20


def synthetic_music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Chords of harmonic tones with note changes and percussive noise bursts (no recorded music)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    beat = float(rng.uniform(0.3, 0.6))
    for start in np.arange(0, seconds, beat * 4):
        a, b = int(start * SAMPLE_RATE), min(n, int((start + beat * 4) * SAMPLE_RATE))
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        for interval in (0, 4, 7, int(rng.choice([10, 11, 12]))):
            f = root * 2 ** (interval / 12)
            for h in range(1, 5):
                out[a:b] += np.sin(2 * np.pi * f * h * t[a:b] + rng.uniform(0, 6.3)) / h**1.5
    env = np.exp(-((t % beat) / 0.04))
    out += rng.standard_normal(n) * env * 0.8
    return (out / (np.sqrt(np.mean(out**2)) + 1e-9)).astype(np.float32)


def bank_audio(tts_s: float, noise_s: float, music_s: float, seed: int) -> list[tuple[str, np.ndarray]]:
    """(kind, audio) segments of at most :data:`SEGMENT_S`, levelled like the streams' speech."""
    rng = np.random.default_rng(seed)
    segs = tts_segments(eval_sentences(0), tts_s, BANK_VOICES, seed, "tts")
    speech, _ = concat(segs, rng)
    out: list[tuple[str, np.ndarray]] = []
    step = int(SEGMENT_S * SAMPLE_RATE)
    out += [("tts", speech[k : k + step]) for k in range(0, len(speech), step)]
    for k in range(int(np.ceil(noise_s / SEGMENT_S))):
        color = ("white", "pink", "brown")[k % 3]
        out.append(("noise", level(colored_noise(step, color, rng), 0.05 * 10 ** (-rng.uniform(0, 30) / 20))))
    for _ in range(int(np.ceil(music_s / SEGMENT_S))):
        out.append(("music", level(synthetic_music(SEGMENT_S, rng))))
    return [(k, a + rng.standard_normal(len(a)).astype(np.float32) * 5e-4) for k, a in out]


def window_embeddings(spotter: Spotter, segments: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each segment (16 kHz) through an engine stream -> (end frames [F], embeddings [F, W, D]) of
    every scored frame where all ``W`` window lengths are whole. Segments decode as one batch."""
    plan = spotter.plan
    seen: list[list[FrameScores]] = [[] for _ in segments]
    streams = [spotter.create_stream(score_hook=f.append) for f in seen]
    for s, audio in zip(streams, segments, strict=True):
        s.accept_waveform(audio)
        s.input_finished()
    while busy := [s for s in streams if s.ready()]:
        spotter.decode_streams(busy)
    out = []
    for audio, frames in zip(segments, seen, strict=True):
        real = spotter.features.num_frames(len(audio))  # later frames hold end-of-stream padding
        keep = [f for f in frames if max(plan.windows) - 1 <= f.frame < real]
        dim = spotter.spec.embedding_dim
        emb = (
            np.stack([f.embeddings for f in keep])
            if keep
            else np.zeros((0, len(plan.windows), dim), np.float32)
        )
        out.append((np.array([f.frame for f in keep], np.int64), emb.astype(np.float32)))
    return out


def quantize(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float vectors -> (int8 codes, float16 scale per vector)."""
    scale = np.maximum(np.abs(emb).max(axis=-1), 1e-9) / 127.0
    return np.round(emb / scale[..., None]).astype(np.int8), scale.astype(np.float16)


def build_bank(
    model_dir: Path,
    tts_s: float = 840.0,
    noise_s: float = 180.0,
    music_s: float = 180.0,
    stride: int = 4,
    seed: int = 0,
) -> Path:
    """Write ``<model_dir>/calibration_bank.npz``; returns its path."""
    cfg = DetectorConfig(window_stride_frames=stride)
    sp = Spotter.load(Path(model_dir), cfg, device="cpu", threads=1)
    segs = bank_audio(tts_s, noise_s, music_s, seed)
    embs, seg_ids, frames, kinds = [], [], [], {}
    cut = [
        (kind, audio, *w)
        for (kind, audio), w in zip(segs, window_embeddings(sp, [a for _, a in segs]), strict=True)
    ]
    for i, (kind, audio, ends, e) in enumerate(cut):
        embs.append(e)
        seg_ids.append(np.full(len(ends), i, np.int32))
        frames.append(ends.astype(np.int32))
        kinds[kind] = kinds.get(kind, 0.0) + len(audio) / SAMPLE_RATE
    q, scale = quantize(np.concatenate(embs))
    hours = sum(len(a) for _, a in segs) / SAMPLE_RATE / 3600.0
    path = Path(model_dir) / BANK_FILE
    np.savez(
        path,
        embeddings=q,
        scales=scale,
        segment=np.concatenate(seg_ids),
        frame=np.concatenate(frames),
        hours=np.float64(hours),
        stride_frames=np.int32(stride),
        fingerprint=np.array(sp.acoustic_fingerprint),
        sources=np.array(json.dumps({k: round(v / 60, 2) for k, v in kinds.items()})),
    )
    size = path.stat().st_size
    if size > MAX_BANK_BYTES:
        raise RuntimeError(
            f"{path} is {size / 2**20:.1f} MiB; keep the bank under {MAX_BANK_BYTES / 2**20:.0f} MiB"
        )
    log.info(
        "calibration bank %s: %d frames x %d windows, %.2f h, %.1f MiB",
        path,
        q.shape[0],
        q.shape[1],
        hours,
        size / 2**20,
    )
    return path
