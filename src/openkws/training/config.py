"""Typed training configuration: YAML files in ``openkws/training/configs/`` parsed into frozen pydantic models.

Every field has a documented default; unknown keys are an error (a typo must not silently fall
back to a default). ``base:`` in a YAML file names another config in the same folder to start from,
so ablation rows state only what they change.

Example:
    >>> cfg = load_config(CONFIG_DIR / "smoke.yaml")
    >>> cfg.model.frontend
    'speech_embedding'
    >>> cfg.model.acoustic.context_frames > 0
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

Frontend = Literal["logmel", "speech_embedding"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BlockConfig(_Frozen):
    """One SE-Res2Net block: Res2Net sub-convolution kernel and dilation (both valid)."""

    kernel: int = Field(3, ge=1)
    dilation: int = Field(1, ge=1)


class AcousticConfig(_Frozen):
    """Streaming ECAPA-TDNN. Every convolution is valid, so the model has a fixed context.

    ``context_frames`` (derived) = input frames consumed beyond one output frame.
    """

    channels: int = Field(192, ge=8)
    front_kernel: int = Field(3, ge=1)
    blocks: tuple[BlockConfig, ...] = (BlockConfig(kernel=1), BlockConfig(kernel=1), BlockConfig(kernel=1))
    scale: int = Field(4, ge=2)  # Res2Net sub-bands
    se_window: int = Field(2, ge=1)  # local squeeze: average over this many frames (valid)
    se_bottleneck: int = Field(64, ge=4)
    mfa_channels: int = Field(384, ge=8)  # multi-layer feature aggregation output
    attention_hidden: int = Field(64, ge=4)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _divisible(self) -> AcousticConfig:
        if self.channels % self.scale:
            raise ValueError(f"channels {self.channels} must be divisible by scale {self.scale}")
        return self

    @property
    def context_frames(self) -> int:
        ctx = self.front_kernel - 1
        for b in self.blocks:
            ctx += (self.scale - 1) * (b.kernel - 1) * b.dilation + (self.se_window - 1)
        return ctx

    @property
    def frame_dim(self) -> int:
        return 2 * self.mfa_channels  # per frame: values [C] and channel-wise attention logits [C]


class TextConfig(_Frozen):
    embed_dim: int = Field(128, ge=4)
    hidden: int = Field(128, ge=4)  # per direction
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class ModelConfig(_Frozen):
    frontend: Frontend = "speech_embedding"
    embedding_dim: int = Field(256, ge=8)
    acoustic: AcousticConfig = AcousticConfig()
    text: TextConfig = TextConfig()
    attention_heads: int = Field(1, ge=1)  # phoneme cross-attention (training only)
    # Windows the streaming detector evaluates, in feature frames; `None` = front-end default.
    windows_frames: tuple[int, ...] | None = None
    window_stride_frames: int | None = None
    default_threshold: float = Field(0.5, ge=0.0, le=1.0)


class PhonemeLossConfig(_Frozen):
    """Phoneme-level branch: cross-attention aligned audio vs per-phoneme-class text proxies."""

    enabled: bool = False
    losses: tuple[str, ...] = ("asyp", "adams")
    weight: float = Field(0.1, ge=0.0)  # lambda_phn
    # Phoneme positions per batch used as anchors (random subset): the proxy-pair losses build an
    # anchors x anchors similarity matrix, so cost grows quadratically (K x M x ~6 phonemes > 1000).
    max_anchors: int = Field(512, ge=8)


class MALConfig(_Frozen):
    """Modality adversarial learning (gradient reversal + 2-layer modality classifier)."""

    utterance: bool = False
    phoneme: bool = False
    weight: float = Field(0.1, ge=0.0)  # lambda_adv: the encoders' share of the reversed gradient
    hidden: int = Field(256, ge=4)
    # "dann": lambda_adv * (2 / (1 + exp(-gamma * progress)) - 1), ramping 0 -> lambda_adv over the
    # run (Ganin & Lempitsky 2015); an adversary at full strength from step 0 made the modality
    # accuracy swing between 0 and 1 in the first ablation runs. "constant": lambda_adv throughout.
    schedule: Literal["dann", "constant"] = "dann"
    gamma: float = Field(10.0, gt=0.0)


class LossConfig(_Frozen):
    utterance: str = "asyp"  # name in openkws.training.losses.LOSSES (proxy family)
    utterance_kwargs: dict[str, Any] = Field(default_factory=dict)
    phoneme: PhonemeLossConfig = PhonemeLossConfig()
    mal: MALConfig = MALConfig()
    keyword: Literal["sphereface2"] | None = None  # keyword classification on the acoustic branch
    keyword_weight: float = Field(1.0, ge=0.0)
    rpl: Literal["distance", "angle", "prototype"] | None = None
    rpl_weight: float = Field(1.0, ge=0.0)
    add_weight: float = Field(0.0, ge=0.0)  # Angular Distance Distribution (0 = off)
    background_weight: float = Field(0.0, ge=0.0)  # background negatives (0 = off)
    background_margin: float = Field(0.5, ge=-1.0, le=1.0)
    background_scale: float = Field(50.0, gt=0.0)
    # Margin raised by up to this much for short keywords (1 phone: all of it, `short_phones`: none).
    background_short_bonus: float = Field(0.0, ge=0.0, le=0.5)
    background_short_phones: int = Field(6, ge=2)
    # Also against each keyword's mean audio window in the batch (the shape of a TTS proxy).
    background_acoustic: bool = False


class SpeakerAugmentConfig(_Frozen):
    """Speaker augmentation on every augmented rendition (``openkws.training.data.speaker``):
    Praat's change-gender for pitch, formants, pitch range and tempo, a shelf filter for tilt."""

    p: float = Field(1.0, ge=0.0, le=1.0)
    pitch_semitones: tuple[float, float] = (-5.0, 5.0)
    formant_ratio: tuple[float, float] = (0.8, 1.25)
    tempo: tuple[float, float] = (0.7, 1.4)
    pitch_range: tuple[float, float] = (0.5, 1.0)  # > 1 can hang Praat (data/speaker.py)
    tilt_db: tuple[float, float] = (-6.0, 6.0)


class RoomAugmentConfig(_Frozen):
    """Rooms and channels (``openkws.training.data.augment.AugmentConfig``); ``None`` keeps the data
    layer's default for that field."""

    p_reverb: float | None = Field(None, ge=0.0, le=1.0)
    p_noise: float | None = Field(None, ge=0.0, le=1.0)
    noise_snr_db: tuple[float, float] | None = None
    p_babble: float | None = Field(None, ge=0.0, le=1.0)
    babble_snr_db: tuple[float, float] | None = None
    p_telephone: float | None = Field(None, ge=0.0, le=1.0)
    p_band_limit: float | None = Field(None, ge=0.0, le=1.0)
    p_gain: float | None = Field(None, ge=0.0, le=1.0)

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class DataConfig(_Frozen):
    manifest: str = "data/synth/manifest.csv"
    cache_dir: str = "data/cache"
    asterisk_manifest: str = "data/eval/asterisk/manifest.csv"
    keywords_per_batch: int = Field(64, ge=2)  # K
    utterances_per_keyword: int = Field(2, ge=2)  # M
    hard_fraction: float = Field(0.5, ge=0.0, le=1.0)  # classes drawn with a confusable neighbour
    bucket_by_window: bool = True  # batches of one window length (no padding, no length cue)
    augment_variants: int = Field(2, ge=0)  # cached augmented copies per clip (speech_embedding)
    augment_prob: float = Field(0.6, ge=0.0, le=1.0)  # waveform augmentation prob (logmel, on the fly)
    context_seconds: float = Field(0.6, ge=0.0)  # audio padded around each clip before featurising
    frame_mask_prob: float = Field(0.2, ge=0.0, le=1.0)
    max_mask_frames: int = Field(2, ge=0)
    max_train_clips: int | None = None  # subsample the manifest (smoke runs)
    # Keep at most this many train clips per text (distinct voices first). Word diversity matters more
    # than clips per word for open vocabulary, and the feature cache costs ~20 ms per clip and variant.
    max_clips_per_word: int | None = None
    val_pairs: int = Field(2000, ge=10)  # ~val_pairs/3 validation clips, each in 3 pairs
    # Train texts withheld from training and used for validation: the `dev` split holds *seen* words
    # spoken by held-out voices, so without these the validation EER could not see word generalisation.
    val_words: int = Field(200, ge=0)
    num_workers: int = Field(0, ge=0)
    speaker_augment: SpeakerAugmentConfig | None = None  # None: the old speed perturbation only
    room_augment: RoomAugmentConfig = RoomAugmentConfig()
    # Background negatives (windows without a keyword): a cut rendition of every phrase clip, and
    # running-speech sequences per cache shard; `background_fraction` x batch windows per batch.
    partials: bool = False
    background_per_shard: int = Field(0, ge=0)
    background_fraction: float = Field(0.0, ge=0.0, le=2.0)
    # Train on the finished shards of the cache only (a cache build may still be running).
    cache_ready_only: bool = False
    # Validation also on one augmented rendition of each dev clip; the checkpoint is then chosen on
    # the mean of clean and augmented EER (held-out voices under augmentation).
    val_augmented: bool = False


class TrainConfig(_Frozen):
    # Start from an exported model directory's weights (fine-tuning a shipped model whose
    # checkpoint is gone; the geometry must match). None: random initialisation.
    init_from: str | None = None
    epochs: int = Field(30, ge=1)
    batches_per_epoch: int | None = None  # None = one pass over the keywords
    lr: float = Field(1e-3, gt=0)
    lr_halve_every: int = Field(20, ge=1)  # epochs
    weight_decay: float = Field(1e-4, ge=0)
    loss_lr: float | None = None  # lr for learnable loss parameters (None = lr)
    grad_clip: float = Field(5.0, gt=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1)
    val_every: int = Field(1, ge=1)  # epochs
    log_every: int = Field(10, ge=1)  # steps


class Config(_Frozen):
    name: str
    description: str = ""
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ValueError(f"config inheritance cycle: {' -> '.join(map(str, (*seen, path)))}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = (
        (path.parent / base).with_suffix(".yaml") if not str(base).endswith(".yaml") else path.parent / base
    )
    return _merge(_load_raw(base_path, (*seen, path)), raw)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Parse a YAML config (following ``base:``), apply nested ``overrides``, validate."""
    p = Path(path)
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if not p.is_file() and cand.is_file():
            p = cand
    if not p.is_file():
        shipped = ", ".join(sorted(x.name for x in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"config {path} not found; shipped configs: {shipped}")
    raw = _load_raw(p.resolve())
    raw.setdefault("name", p.stem)
    if overrides:
        raw = _merge(raw, overrides)
    return Config.model_validate(raw)


def shipped_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))
