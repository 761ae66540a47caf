"""Evaluation: verification metrics, (audio, text) pair building, ONNX pair scoring, untrained baselines, plots.

Metrics (numpy only) take scores (higher = more likely a match) and labels 1 (match) / 0 (mismatch);
tied scores form one threshold step, as in scikit-learn.

Pair scoring uses the *exported* ONNX graphs through numpy + onnxruntime, exactly as the service
does: the clip is padded with ``EVAL_PAD_S`` of silence on both sides (a stream has audio around a
keyword), featurised with the service's front-end, ``acoustic_frames`` runs once over the whole clip,
and ``acoustic_pool`` embeds every window the streaming detector would evaluate (every length in
``windows_frames``, every ``window_stride_frames``; see :func:`openkws.training.models.windows.window_positions`).
A pair's score is the maximum cosine over those windows, which is the score the detector would reach
on that audio.

Example:
    >>> import numpy as np
    >>> s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    >>> y = np.array([1, 1, 0, 1, 0, 0])
    >>> round(roc_auc(s, y), 4)  # 8 of 9 (pos, neg) pairs ordered correctly
    0.8889
    >>> round(average_precision(s, y), 4)  # (1/1 + 2/2 + 3/4) / 3
    0.9167
    >>> round(eer(s, y), 4)
    0.3333
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openkws.engine.acoustic_proxy import PROXY_MODES as PROXY_MODES  # the service's enrollment modes

logger = logging.getLogger("openkws.training.evaluate")

EVAL_PAD_S = 0.5  # silence added on both sides of an evaluation clip


# --------------------------------------------------------------------------------------------- metrics
def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if y.all() or not y.any():
        raise ValueError("need both match (1) and mismatch (0) pairs to compute verification metrics")
    return s, y


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing; starts at (0, 0) with threshold +inf."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.zeros(0, int)
    idx = np.concatenate([distinct, [len(s) - 1]])
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tpr = np.concatenate([[0.0], tps / y.sum()])
    fpr = np.concatenate([[0.0], fps / (~y).sum()])
    thr = np.concatenate([[np.inf], s[idx]])
    return fpr, tpr, thr


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds (no interpolation)."""
    s, y = _check(scores, labels)
    fpr, tpr, _ = roc_curve(s, y)
    n_pos, n_neg = y.sum(), (~y).sum()
    tp, fp = tpr * n_pos, fpr * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 1.0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate: where the false-accept rate equals the false-reject rate (linear interpolation
    on the ROC between the two thresholds that bracket the crossing)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from -1 to +1
    i = int(np.flatnonzero(diff >= 0)[0])
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    # crossing between i-1 and i
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def det_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-accept rate, false-reject rate) per threshold."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return fpr, 1.0 - tpr


def summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER / ROC-AUC / AP (fractions in [0, 1]) and pair counts."""
    y = np.asarray(labels).astype(bool)
    return {
        "eer": eer(scores, labels),
        "auc": roc_auc(scores, labels),
        "ap": average_precision(scores, labels),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
    }


# --------------------------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class EvalClip:
    path: Path
    text: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Pair:
    clip: int  # index into the clip list
    text: str
    label: int  # 1 match, 0 mismatch
    kind: str  # "positive", "easy" or "hard"


def read_eval_manifest(path: Path, split: str | None = None) -> list[EvalClip]:
    """``path,text[,start,end]`` CSV (seconds); relative paths resolve against the manifest's folder.

    Extra columns are ignored; with ``split``, only rows whose ``split`` column equals it are kept
    (so the synthetic corpus manifest can be evaluated on its ``test`` split directly)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: manifest lacks columns {sorted(missing)}; expected path,text[,start,end]"
            )
        if split is not None and "split" not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no split column; drop --split")
        for row in reader:
            if split is not None and row["split"] != split:
                continue
            p = Path(row["path"])
            if not p.is_absolute():
                p = path.parent / p if (path.parent / p).exists() else Path.cwd() / p
            start = float(row["start"]) if row.get("start") not in (None, "") else None
            end = float(row["end"]) if row.get("end") not in (None, "") else None
            out.append(EvalClip(p, row["text"].strip(), start, end))
    return out


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two sequences.

    >>> edit_distance([1, 2, 3], [1, 3]), edit_distance([], [4, 5])
    (1, 2)
    """
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def build_pairs(texts: Sequence[str], phonemes: dict[str, Sequence[int]], seed: int = 0) -> list[Pair]:
    """LibriPhrase-style pairs: every clip with its own text (positive), with a random other text
    (easy negative) and with the text at the smallest phoneme edit distance (hard negative; distinct
    pronunciations only, ties broken at random). :func:`make_pairs` prefers the data layer's
    ``openkws.training.data.pairs`` protocol; this is the fallback when that module is absent."""
    rng = np.random.default_rng(seed)
    vocab = sorted(set(texts))
    if len(vocab) < 2:
        raise ValueError("need at least two distinct texts to build mismatch pairs")
    ph = {t: tuple(phonemes[t]) for t in vocab}
    hard: dict[str, list[str]] = {}
    for t in vocab:
        d = [(edit_distance(ph[t], ph[u]), u) for u in vocab if u != t and ph[u] != ph[t]]
        if d:
            best = min(x for x, _ in d)
            hard[t] = [u for x, u in d if x == best]
    pairs: list[Pair] = []
    for i, t in enumerate(texts):
        pairs.append(Pair(i, t, 1, "positive"))
        others = [u for u in vocab if ph[u] != ph[t]]
        if others:
            pairs.append(Pair(i, others[int(rng.integers(len(others)))], 0, "easy"))
        if t in hard:
            cands = hard[t]
            pairs.append(Pair(i, cands[int(rng.integers(len(cands)))], 0, "hard"))
    return pairs


def _data_layer_pairs(
    texts: Sequence[str], phonemes: dict[str, Sequence[int]], seed: int
) -> list[Pair] | None:
    """Pairs from the data layer's ``openkws.training.data.pairs.build_pairs`` (the project's protocol:
    hard negatives at 1-2 phoneme edits, ranked by a vowel/consonant-weighted distance), mapped back
    to clip indices; ``None`` if that module is absent."""
    try:
        from .data.pairs import PairItem
        from .data.pairs import build_pairs as dl_build_pairs
    except ImportError:
        return None
    from openkws.text import load_inventory

    inv = load_inventory()
    items = [PairItem(str(i), t, tuple(inv.decode(list(phonemes[t])))) for i, t in enumerate(texts)]
    return [Pair(int(p.path), p.text, int(p.label), str(p.kind)) for p in dl_build_pairs(items, seed=seed)]


def make_pairs(texts: Sequence[str], phonemes: dict[str, Sequence[int]], seed: int = 0) -> list[Pair]:
    """Match / easy / hard pairs for clips with these texts (phonemes as inventory ids)."""
    pairs = _data_layer_pairs(texts, phonemes, seed)
    return pairs if pairs is not None else build_pairs(texts, phonemes, seed)


# --------------------------------------------------------------------------------------------- audio
def load_eval_audio(clip: EvalClip) -> np.ndarray:
    from openkws.constants import SAMPLE_RATE

    from .dataset import load_audio

    wave = load_audio(clip.path)
    if clip.start is not None or clip.end is not None:
        s = int(round((clip.start or 0.0) * SAMPLE_RATE))
        e = int(round(clip.end * SAMPLE_RATE)) if clip.end is not None else len(wave)
        wave = wave[s:e]
    return wave


def pad_eval(wave: np.ndarray) -> np.ndarray:
    from openkws.constants import SAMPLE_RATE

    pad = int(EVAL_PAD_S * SAMPLE_RATE)
    return np.pad(np.asarray(wave, np.float32), (pad, pad))


# --------------------------------------------------------------------------------------------- ONNX scorer
class OnnxScorer:
    """Embeds clips (every detector window) and keyword texts with an exported model directory."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from openkws.engine.features import FeatureExtractor
        from openkws.engine.model_spec import load_spec

        self.dir = Path(model_dir)
        self.spec = load_spec(self.dir)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3

        def sess(role: str) -> ort.InferenceSession:
            return ort.InferenceSession(
                str(self.spec.file_path(self.dir, role)), so, providers=["CPUExecutionProvider"]
            )

        self.frames, self.pool, self.text = sess("acoustic_frames"), sess("acoustic_pool"), sess("text")
        emb = (
            self.spec.file_path(self.dir, "speech_embedding")
            if self.spec.frontend == "speech_embedding"
            else None
        )
        self.fx = FeatureExtractor(
            self.spec.frontend, self.spec.file_path(self.dir, "melspectrogram"), emb, threads
        )
        self._g2p = None

    def window_embeddings(self, wave: np.ndarray) -> np.ndarray:
        """[N] audio -> [num_windows, D] L2-normalised embeddings of every detector window."""
        from .models.windows import window_positions

        ctx = self.spec.acoustic_context_frames
        feats = self.fx.features(pad_eval(wave))
        need = ctx + 1
        if len(feats) < need:  # shorter than the model's context: extend the silence
            extra = (need - len(feats)) * self.spec.feature_hop_samples
            feats = self.fx.features(np.pad(pad_eval(wave), (0, extra)))
        frames = self.frames.run(None, {"features": feats[None].astype(np.float32)})[0][0]
        pos = window_positions(len(feats), tuple(self.spec.windows_frames), self.spec.window_stride_frames)
        n_out = [w - ctx for _, w in pos]
        tmax = max(n_out)
        batch = np.zeros((len(pos), tmax, frames.shape[1]), np.float32)
        mask = np.zeros((len(pos), tmax), np.float32)
        for k, ((s, _), n) in enumerate(zip(pos, n_out, strict=True)):
            batch[k, :n] = frames[s : s + n]
            mask[k, :n] = 1.0
        return self.pool.run(None, {"frames": batch, "mask": mask})[0]

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        from openkws.text import G2P

        if self._g2p is None:
            self._g2p = G2P()
        ids = [list(self._g2p(t).ids) for t in texts]
        length = max(len(i) for i in ids)
        arr = np.zeros((len(ids), length), np.int64)
        for k, i in enumerate(ids):
            arr[k, : len(i)] = i
        lengths = np.array([len(i) for i in ids], np.int64)
        return self.text.run(None, {"phoneme_ids": arr, "lengths": lengths})[0]

    def tts_embeddings(
        self, texts: Sequence[str], voices: Sequence[str], progress: bool = False
    ) -> np.ndarray:
        """Acoustic proxies: the mean audio embedding of each text synthesized with ``voices`` (each
        rendition embedded through the window training would cut for it), L2-normalised. [N, D]."""
        from openkws.engine.acoustic_proxy import AcousticProxies
        from tqdm import tqdm

        acoustic = AcousticProxies(self.spec, self.fx.features, self.frames, self.pool, EVAL_PAD_S)
        out = []
        for t in tqdm(texts, desc="TTS proxies", unit="text", disable=not progress):
            out.append(acoustic([synthesize_any(t, v, seed=k) for k, v in enumerate(voices)]))
        return np.stack(out)

    def proxies(self, texts: Sequence[str], mode: str = "text", voices: Sequence[str] | None = None,
                progress: bool = False) -> np.ndarray:  # fmt: skip
        """Keyword proxies: ``text`` (text encoder, the service's default), ``tts`` (acoustic proxies
        from synthesized renditions) or ``both`` (normalised sum)."""
        from openkws.engine.acoustic_proxy import combine_proxies

        if mode not in PROXY_MODES:
            raise ValueError(f"proxy mode {mode!r}; expected one of {PROXY_MODES}")
        text = self.text_embeddings(texts) if mode in ("text", "both") else None
        tts = (
            self.tts_embeddings(texts, voices or template_voices(), progress)
            if mode in ("tts", "both")
            else None
        )
        return combine_proxies(text, tts, mode)


def score_pairs_model(
    scorer: OnnxScorer,
    clips: Sequence[EvalClip],
    pairs: Sequence[Pair],
    progress: bool = True,
    proxy: str = "text",
) -> np.ndarray:
    from tqdm import tqdm

    vocab = sorted({p.text for p in pairs})
    proxies = dict(zip(vocab, scorer.proxies(vocab, proxy, progress=progress), strict=True))
    by_clip: dict[int, list[int]] = {}
    for k, p in enumerate(pairs):
        by_clip.setdefault(p.clip, []).append(k)
    scores = np.zeros(len(pairs), np.float64)
    for c in tqdm(sorted(by_clip), desc="embedding clips", unit="clip", disable=not progress):
        emb = scorer.window_embeddings(load_eval_audio(clips[c]))
        for k in by_clip[c]:
            scores[k] = float((emb @ proxies[pairs[k].text]).max())
    return scores


# --------------------------------------------------------------------------------------------- baselines
TEMPLATE_VOICES = 8
# Plain, intelligible training voices over every engine (no whisper/novelty variants).
PREFERRED_TEMPLATE_VOICES = (
    "espeak:en-us+m3", "espeak:en-us+f2", "flite:slt", "festival:kal", "espeak:en-gb+m1", "flite:kal",
    "festival:slt", "espeak:en-us+f4", "flite:rms", "festival:ked",
)  # fmt: skip


def template_voices(n: int = TEMPLATE_VOICES) -> list[str]:
    """``n`` training voices spread over engines/accents (the data layer's registry when present)."""
    try:
        from .data.tts import list_voices
    except ImportError:
        from openkws.text.tts import PROXY_VOICES  # the service's acoustic-proxy voices

        return list(PROXY_VOICES[:n])
    voices = [v for v in list_voices() if getattr(v, "split", "train") == "train"]
    ids = [getattr(v, "id", None) or getattr(v, "name", str(v)) for v in voices]
    preferred = [v for v in PREFERRED_TEMPLATE_VOICES if v in ids]
    if len(preferred) >= n:
        return preferred[:n]
    by_engine: dict[str, list[str]] = {}
    for i in ids:
        by_engine.setdefault(i.split(":")[0], []).append(i)
    out: list[str] = []
    while len(out) < n and any(by_engine.values()):
        for eng in sorted(by_engine):
            if by_engine[eng] and len(out) < n:
                lst = by_engine[eng]
                out.append(lst.pop(len(lst) // 2))
    return out


def synthesize_any(text: str, voice: str, seed: int = 0) -> np.ndarray:
    """The data layer's TTS, or the service's (espeak-ng and flite) when the data layer is not available."""
    try:
        from .data.tts import synthesize
    except ImportError:
        from openkws.text.tts import ProxyTTS

        return ProxyTTS().synthesize(text, voice, seed=seed)
    return synthesize(text, voice, seed=seed)


def _mean_max(feats: np.ndarray) -> np.ndarray:
    v = np.concatenate([feats.mean(axis=0), feats.max(axis=0)])
    return v / max(1e-9, float(np.linalg.norm(v)))


def _trim(wave: np.ndarray) -> np.ndarray:
    from .dataset import speech_span

    s, e = speech_span(wave)
    return wave[s:e]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Path-length-normalised DTW with cosine frame distance, vectorised over anti-diagonals.

    >>> x = np.random.default_rng(0).normal(size=(12, 4))
    >>> dtw_distance(x, x) < 1e-9, dtw_distance(x, np.repeat(x, 2, axis=0)) < 1e-9
    (True, True)
    """
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-9)
    cost = np.clip(1.0 - an @ bn.T, 0.0, 2.0)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1))
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):  # anti-diagonal i + j = k (1-based)
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        cands = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        lens = np.stack([steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1]])
        best = np.argmin(cands, axis=0)
        acc[i, j] = cands[best, np.arange(len(i))] + cost[i - 1, j - 1]
        steps[i, j] = lens[best, np.arange(len(i))] + 1
    return float(acc[n, m] / steps[n, m])


class TemplateBaselines:
    """Untrained baselines from TTS templates (``TEMPLATE_VOICES`` voices per keyword).

    * ``speech_embedding``: cosine between mean+max-pooled frozen speech embeddings of the clip and
      of each template; a pair's score is the best template.
    * ``dtw``: minus the DTW distance between mean-normalised log-mel sequences (speech span only).
    """

    def __init__(self, voices: Sequence[str] | None = None, threads: int = 1) -> None:
        from .models.frontend import feature_extractor

        self.voices = list(voices or template_voices())
        self.emb_fx = feature_extractor("speech_embedding", threads)
        self.mel_fx = feature_extractor("logmel", threads)
        self._templates: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}

    def _clip_repr(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb = self.emb_fx.features(pad_eval(wave))
        mel = self.mel_fx.features(_trim(wave))
        mel = mel - mel.mean(axis=0, keepdims=True)
        return _mean_max(emb), mel[::2]  # DTW at 50 frames/s

    def templates(self, text: str) -> tuple[np.ndarray, list[np.ndarray]]:
        if text not in self._templates:
            reps = [self._clip_repr(synthesize_any(text, v, seed=k)) for k, v in enumerate(self.voices)]
            self._templates[text] = (np.stack([r[0] for r in reps]), [r[1] for r in reps])
        return self._templates[text]

    def score(
        self, clips: Sequence[EvalClip], pairs: Sequence[Pair], progress: bool = True
    ) -> dict[str, np.ndarray]:
        from tqdm import tqdm

        by_clip: dict[int, list[int]] = {}
        for k, p in enumerate(pairs):
            by_clip.setdefault(p.clip, []).append(k)
        emb_s = np.zeros(len(pairs))
        dtw_s = np.zeros(len(pairs))
        for c in tqdm(sorted(by_clip), desc="baselines", unit="clip", disable=not progress):
            vec, mel = self._clip_repr(load_eval_audio(clips[c]))
            for k in by_clip[c]:
                tv, tm = self.templates(pairs[k].text)
                emb_s[k] = float((tv @ vec).max())
                dtw_s[k] = -min(dtw_distance(mel, t) for t in tm)
        return {"tts_template_speech_embedding": emb_s, "tts_template_dtw_logmel": dtw_s}


# --------------------------------------------------------------------------------------------- report
def pair_metrics(scores: np.ndarray, pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """Metrics for positives vs easy negatives and positives vs hard negatives."""
    kinds = np.array([p.kind for p in pairs])
    labels = np.array([p.label for p in pairs])
    out = {}
    for neg in ("easy", "hard"):
        sel = (kinds == "positive") | (kinds == neg)
        if (kinds == neg).any() and (kinds == "positive").any():
            out[neg] = summary(scores[sel], labels[sel])
    return out


def plot_curves(results: dict[str, tuple[np.ndarray, Sequence[Pair]]], path: Path, title: str = "") -> Path:
    """DET (probit axes) and ROC curves for easy and hard pairs of each system, plus score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import ndtri

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    for name, (scores, pairs) in results.items():
        kinds = np.array([p.kind for p in pairs])
        labels = np.array([p.label for p in pairs])
        for neg, ls in (("easy", "-"), ("hard", "--")):
            sel = (kinds == "positive") | (kinds == neg)
            if not (kinds == neg).any():
                continue
            far, frr = det_curve(scores[sel], labels[sel])
            clip = lambda x: np.clip(x, 1e-4, 1 - 1e-4)  # noqa: E731
            axes[0].plot(ndtri(clip(far)), ndtri(clip(frr)), ls, label=f"{name} {neg}")
            fpr, tpr, _ = roc_curve(scores[sel], labels[sel])
            axes[1].plot(fpr, tpr, ls, label=f"{name} {neg} (AUC {roc_auc(scores[sel], labels[sel]):.3f})")
    name0 = next(iter(results))
    scores, pairs = results[name0]
    for kind in ("positive", "easy", "hard"):
        s = np.array([sc for sc, p in zip(scores, pairs, strict=True) if p.kind == kind])
        if len(s):
            axes[2].hist(s, bins=40, alpha=0.5, label=kind, density=True)
    axes[0].set_xticks(ndtri(ticks), [f"{t:g}" for t in ticks])
    axes[0].set_yticks(ndtri(ticks), [f"{t:g}" for t in ticks])
    axes[0].set_xlim(ndtri(5e-4), ndtri(0.8))
    axes[0].set_ylim(ndtri(5e-4), ndtri(0.8))
    axes[0].set(xlabel="false accept rate", ylabel="false reject rate", title="DET")
    axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes[2].set(xlabel="score", title=f"score histogram ({name0})")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_pairs(
    manifest: Path,
    model_dir: Path | None,
    out_dir: Path | None = None,
    baselines: bool = False,
    max_clips: int | None = None,
    seed: int = 0,
    progress: bool = True,
    split: str | None = None,
    proxies: Sequence[str] = ("text",),
) -> dict[str, object]:
    """The ``openkws eval pairs`` pipeline; returns (and writes) the JSON report."""
    from openkws.text import G2P, load_inventory

    clips = read_eval_manifest(manifest, split)
    if not clips:
        raise ValueError(f"no clips in {manifest}" + (f" with split={split}" if split else ""))
    if max_clips is not None and len(clips) > max_clips:
        rng = np.random.default_rng(seed)
        clips = [clips[i] for i in sorted(rng.choice(len(clips), max_clips, replace=False))]
    g2p = G2P()
    texts = [c.text for c in clips]
    inv = load_inventory()
    phonemes = {t: tuple(inv.encode(g2p(t).phones_only)) for t in set(texts)}
    pairs = make_pairs(texts, phonemes, seed)
    systems: dict[str, np.ndarray] = {}
    report: dict[str, object] = {"manifest": str(manifest), "split": split, "clips": len(clips), "pairs": {
        k: sum(p.kind == k for p in pairs) for k in ("positive", "easy", "hard")}, "systems": {}}  # fmt: skip
    if model_dir is not None:
        scorer = OnnxScorer(model_dir)
        for mode in proxies:
            name = f"openkws:{scorer.spec.model_version}" + ("" if mode == "text" else f"[proxy={mode}]")
            systems[name] = score_pairs_model(scorer, clips, pairs, progress, mode)
        report["model"] = {"dir": str(model_dir), "model_version": scorer.spec.model_version,
                           "frontend": scorer.spec.frontend, "windows_frames": scorer.spec.windows_frames}  # fmt: skip
    if baselines:
        tb = TemplateBaselines()
        systems.update(tb.score(clips, pairs, progress))
        report["template_voices"] = tb.voices
    for name, scores in systems.items():
        report["systems"][name] = pair_metrics(scores, pairs)  # type: ignore[index]
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "pairs.json").write_text(json.dumps(report, indent=2) + "\n")
        with open(out_dir / "scores.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "text", "label", "kind", *systems])
            for k, p in enumerate(pairs):
                w.writerow(
                    [clips[p.clip].path, p.text, p.label, p.kind, *(f"{s[k]:.5f}" for s in systems.values())]
                )
        if systems:
            plot_curves(
                {n: (s, pairs) for n, s in systems.items()}, out_dir / "pairs.png", title=str(manifest)
            )
    return report


def format_report(report: dict[str, object]) -> str:
    lines = []
    for name, res in report["systems"].items():  # type: ignore[attr-defined]
        for neg, m in res.items():
            lines.append(f"{name:45s} {neg:5s} EER {100 * m['eer']:6.2f}%  AUC {m['auc']:.4f}  AP {m['ap']:.4f}"
                         f"  ({m['n_pos']}+/{m['n_neg']}-)")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- cost
def measure_cost(
    model_dir: Path, frames: int = 256, repeats: int = 20, streams: int = 64
) -> dict[str, float]:
    """Milliseconds (CPU time) per acoustic frame / per pooled window with onnxruntime on 1 thread.

    * ``frames_bulk_ms_per_frame``: one call over ``frames`` feature frames (offline).
    * ``frames_stream_ms_per_frame``: one detector step for ``streams`` streams micro-batched: input
      ``[streams, context + stride, F]`` -> ``stride`` new frames per stream (the graph is stateless,
      so each call recomputes the context frames' intermediate activations).
    * ``pool_ms_per_window``: mean over window lengths, each pooled for ``streams`` streams in one batch
      (a batch per length, as a micro-batching service would group them).
    """
    import time

    import onnxruntime as ort
    from openkws.constants import SAMPLE_RATE
    from openkws.engine.model_spec import load_spec

    spec = load_spec(Path(model_dir))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    fr = ort.InferenceSession(
        str(spec.file_path(Path(model_dir), "acoustic_frames")), so, providers=["CPUExecutionProvider"]
    )
    po = ort.InferenceSession(
        str(spec.file_path(Path(model_dir), "acoustic_pool")), so, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    ctx = spec.acoustic_context_frames

    def timed(fn: object, n: int) -> float:
        """Best of 5 rounds of ``n`` calls, in process CPU time: onnxruntime runs on this one thread,
        so CPU time is the model's cost even when other jobs share the cores (wall time is not)."""
        fn()  # type: ignore[operator]
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(n):
                fn()  # type: ignore[operator]
            best = min(best, (time.process_time() - t) / n)
        return best

    x = rng.normal(size=(1, frames + ctx, spec.feature_dim)).astype(np.float32)
    bulk = timed(lambda: fr.run(None, {"features": x}), repeats) / frames
    hop_frames = spec.window_stride_frames  # a stream feeds this many new frames per detector step
    xs = rng.normal(size=(streams, ctx + hop_frames, spec.feature_dim)).astype(np.float32)
    stream = timed(lambda: fr.run(None, {"features": xs}), repeats) / (streams * hop_frames)
    windows = spec.windows_frames
    pool_per_step = 0.0  # one detector step of one stream: every window length once
    for w in windows:
        fb = rng.normal(size=(streams, w - ctx, spec.frame_dim)).astype(np.float32)
        mask = np.ones((streams, w - ctx), np.float32)
        pool_per_step += (
            timed(lambda fb=fb, mask=mask: po.run(None, {"frames": fb, "mask": mask}), max(3, repeats // 4))
            / streams
        )
    pool = pool_per_step / len(windows)
    fps = SAMPLE_RATE / spec.feature_hop_samples
    return {
        "frontend": spec.frontend,  # type: ignore[dict-item]
        "frames_bulk_ms_per_frame": 1e3 * bulk,
        "frames_stream_ms_per_frame": 1e3 * stream,
        "pool_ms_per_window": 1e3 * pool,
        "feature_frames_per_second": fps,
        "acoustic_core_fraction_per_stream": fps * stream
        + fps / spec.window_stride_frames * len(windows) * pool,
    }
