"""Pair scoring through the serving engine: the same :class:`~openkws.engine.spotter.Spotter`,
encoders, window plan and enrollment code as the service, so the figures are what users get.

Each clip (padded with ``EVAL_PAD_S`` of silence on both sides, at its own sample rate; with
``leading_pad=False`` only after it, so the stream starts at the clip's first sample as a satellite's
audio starts at the wake word) is fed to an engine stream as a whole file, exactly as
``POST /v1/detect`` does; the stream's public score
hook collects the embedding of every window the detector evaluates. A pair's score is the maximum
cosine between those windows and the text's proxy: the score the detector would reach on that audio.
Proxies are the service's enrollment: text (``embed_phoneme_ids`` of the G2P pronunciation), tts
(``Spotter.acoustic_proxy`` of synthesized renditions) or both (:func:`combine_proxies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.engine.acoustic_proxy import PROXY_MODES, combine_proxies
from openkws.engine.events import FrameScores
from openkws.engine.scoring import similarities
from openkws.engine.spotter import Spotter
from openkws.training.evaluate.baselines import synthesize_any, template_voices
from openkws.training.evaluate.pairs import EVAL_PAD_S, EvalClip, Pair, read_eval_clip

STREAMS_PER_STEP = 16  # clips decoded together in one batched engine step


class EngineScorer:
    """Embeds clips (every window the detector scores) and keyword texts with the serving engine."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.spotter = Spotter.load(Path(model_dir), device="cpu", threads=threads)
        self.spec = self.spotter.spec
        self._proxies: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # (mode, texts): reused by reruns

    def window_embeddings_many(
        self, clips: Sequence[tuple[int, np.ndarray]], leading_pad: bool = True
    ) -> list[np.ndarray]:
        """(sample rate, mono samples) per clip -> [num_windows, D] embeddings of every scored window."""
        out: list[np.ndarray] = []
        for c in range(0, len(clips), STREAMS_PER_STEP):
            part = clips[c : c + STREAMS_PER_STEP]
            frames: list[list[FrameScores]] = [[] for _ in part]
            streams = [self.spotter.create_stream(score_hook=f.append) for f in frames]
            for s, (rate, x) in zip(streams, part, strict=True):
                pad = np.zeros(int(EVAL_PAD_S * rate), np.float32)
                lead = pad if leading_pad else pad[:0]
                s.accept_waveform(rate, np.concatenate([lead, np.asarray(x, np.float32), pad]))
                s.input_finished()
            while busy := [s for s in streams if s.ready()]:
                self.spotter.decode_streams(busy)
            empty = np.zeros((0, self.spec.embedding_dim), np.float32)
            out += [np.concatenate([f.embeddings for f in fs]) if fs else empty for fs in frames]
        return out

    def window_embeddings(self, wave: np.ndarray, rate: int = 16_000) -> np.ndarray:
        return self.window_embeddings_many([(rate, wave)])[0]

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Text proxies as the service enrolls them (G2P pronunciation -> text encoder)."""
        return self.spotter.embed_phoneme_ids([self.spotter.pronounce(t).ids for t in texts])

    def tts_embeddings(
        self, texts: Sequence[str], voices: Sequence[str], progress: bool = False
    ) -> np.ndarray:
        """Acoustic proxies: the service's ``acoustic_proxy`` of each text synthesized with ``voices``. [N, D]"""
        out = [
            self.spotter.acoustic_proxy([synthesize_any(t, v, seed=k) for k, v in enumerate(voices)])
            for t in tqdm(texts, desc="TTS proxies", unit="text", disable=not progress)
        ]
        return np.stack(out)

    def proxies(
        self,
        texts: Sequence[str],
        mode: str = "text",
        voices: Sequence[str] | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Keyword proxies: ``text`` (the service's default), ``tts`` or ``both`` (normalised sum)."""
        if mode not in PROXY_MODES:
            raise ValueError(f"proxy mode {mode!r}; expected one of {PROXY_MODES}")
        key = (mode, tuple(texts))
        if voices is None and key in self._proxies:
            return self._proxies[key]
        text = self.text_embeddings(texts) if mode in ("text", "both") else None
        tts = (
            self.tts_embeddings(texts, voices or template_voices(), progress)
            if mode in ("tts", "both")
            else None
        )
        out = combine_proxies(text, tts, mode)
        if voices is None:
            self._proxies[key] = out
        return out


def score_pairs_model(
    scorer: EngineScorer,
    clips: Sequence[EvalClip],
    pairs: Sequence[Pair],
    progress: bool = True,
    proxy: str = "text",
    leading_pad: bool = True,
) -> np.ndarray:
    """Each pair's best window cosine with its text's proxy (``leading_pad=False``: no silence ahead
    of the clip)."""
    vocab = sorted({p.text for p in pairs})
    proxies = dict(zip(vocab, scorer.proxies(vocab, proxy, progress=progress), strict=True))
    by_clip: dict[int, list[int]] = {}
    for k, p in enumerate(pairs):
        by_clip.setdefault(p.clip, []).append(k)
    order = sorted(by_clip)
    scores = np.zeros(len(pairs), np.float64)
    bar = tqdm(total=len(order), desc="scoring clips", unit="clip", disable=not progress)
    for c in range(0, len(order), STREAMS_PER_STEP):
        part = order[c : c + STREAMS_PER_STEP]
        embs = scorer.window_embeddings_many([read_eval_clip(clips[i]) for i in part], leading_pad)
        for i, emb in zip(part, embs, strict=True):
            for k in by_clip[i]:
                sims = similarities(emb, proxies[pairs[k].text][None, :])
                scores[k] = float(sims.max()) if sims.size else -1.0
        bar.update(len(part))
    bar.close()
    return scores
