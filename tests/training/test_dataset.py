"""Batching, clip selection and window cropping on synthetic inputs (no audio needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from openkws.engine.windows import crop_window, keyword_window, speech_span, window_samples
from openkws.training.config import load_config
from openkws.training.loader.batcher import WindowBatcher
from openkws.training.loader.clips import Clip, limit_clips_per_word, read_manifest, select_clips
from openkws.training.loader.feature_cache import FeatureStore, build_feature_cache, config_spec, ready_prefix
from openkws.training.loader.sampler import KeywordBatches
from openkws.training.nets.windows import default_windows


def _clips(n_words: int, per_word: int, homophone: bool = False) -> list[Clip]:
    out = []
    for w in range(n_words):
        ids = (3 + w % 30, 4 + w // 30, 5)
        for v in range(per_word):
            out.append(Clip(Path(f"/x/{w}_{v}.wav"), f"w{w}", ids, voice=f"v{v}"))
    if homophone:  # "w0b" sounds exactly like "w0"
        out += [
            Clip(Path(f"/x/h_{v}.wav"), "w0b", out[0].phoneme_ids, voice=f"v{v}") for v in range(per_word)
        ]
    return out


def test_batches_are_k_by_m_and_homophones_share_a_class() -> None:
    clips = _clips(40, 3, homophone=True)
    kb = KeywordBatches(clips, k=8, m=2, seed=1)
    assert len(kb.keys) == 40  # "w0" and "w0b" are one class
    for batch in kb:
        assert len(batch) == 16
        keys = [clips[i].phoneme_ids for i in batch]
        assert len(set(keys)) == 8 and all(keys.count(k) == 2 for k in set(keys))


def test_ddp_ranks_get_disjoint_seed_classes() -> None:
    clips = _clips(64, 2)
    ranks = [KeywordBatches(clips, k=8, m=2, seed=3, rank=r, world=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    seen = [{clips[i].text for b in kb for i in b} for kb in ranks]
    assert not seen[0] & seen[1]


def test_hard_fraction_pairs_confusable_classes() -> None:
    clips = _clips(60, 2)
    kb = KeywordBatches(clips, k=10, m=2, seed=0, hard_fraction=1.0)
    batch = next(iter(kb))
    keys = list(dict.fromkeys(clips[i].phoneme_ids for i in batch))
    close = sum(any(o in kb.neighbours[k] for o in keys if o != k) for k in keys)
    assert close >= 6  # most classes have a one-edit neighbour in the batch


def test_limit_clips_per_word_prefers_distinct_voices() -> None:
    clips = _clips(5, 6)
    clips += [Clip(Path("/x/dup.wav"), "w0", clips[0].phoneme_ids, voice="v0")]
    kept = limit_clips_per_word(clips, 3, seed=0)
    assert len(kept) == 15
    w0 = [c for c in kept if c.text == "w0"]
    assert len({c.voice for c in w0}) == 3


def test_select_clips_withholds_validation_words(tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "phonemes", "voice", "split"])
        for k in range(50):
            for v in range(2):
                w.writerow([f"{k}_{v}.wav", f"word{k}", "AH B", f"v{v}", "train"])
        w.writerow(["d.wav", "word1", "AH B", "held", "dev"])
    train, val = select_clips(man, None, None, seed=0, val_words=5)
    held = {c.text for c in val if c.split == "train"}
    assert len(held) == 5 and not held & {c.text for c in train}
    assert any(c.split == "dev" for c in val) and len(train) == 90


def test_crop_holds_the_keyword() -> None:
    fe = "speech_embedding"
    rng = np.random.default_rng(0)
    hop = 1280
    span = (8000 + 3000, 8000 + 3000 + 6000)  # 0.375 s word after 0.5 s context + lead
    total = 8000 * 2 + 12000
    t = (total - 12512) // hop + 1
    w = keyword_window(span, fe, default_windows(fe))
    assert w == min(default_windows(fe))
    for _ in range(50):
        s = crop_window(t, span, w, fe, rng)
        assert 0 <= s <= max(0, t - w)
        a, b = s * hop, s * hop + window_samples(fe, w)
        assert a <= span[0] and b >= min(span[1], total) or t <= w


def test_window_batcher_shapes() -> None:
    clips = _clips(4, 2)
    feats = [[np.random.default_rng(i).normal(size=(20, 96)).astype(np.float16)] for i in range(len(clips))]
    store = FeatureStore(clips, feats, [np.array([[8000, 14000]])] * len(clips), 8000, "speech_embedding")
    kb = KeywordBatches(clips, k=4, m=2)
    batcher = WindowBatcher(store, "speech_embedding", default_windows("speech_embedding"), kb.class_id, train=True,
                            frame_mask_prob=1.0, max_mask_frames=2)  # fmt: skip
    b = batcher(next(iter(kb)))
    assert b.features.shape == (8, 8, 96) and b.text_ids.shape[0] == 4
    assert (b.labels[::2] == b.labels[1::2]).all() and set(b.word_ids) <= set(range(4))


@pytest.mark.parametrize("lead", [0, 4000])
def test_speech_span(lead: int) -> None:
    wave = np.zeros(16000, np.float32)
    wave[lead : lead + 3200] = np.sin(np.arange(3200) * 0.1)
    s, e = speech_span(wave)
    assert abs(s - lead) <= 160 and abs(e - (lead + 3200)) <= 160


def test_buckets_make_single_length_batches() -> None:
    clips = _clips(64, 2)
    kb = KeywordBatches(clips, k=8, m=2, seed=0, hard_fraction=0.5)
    kb.set_buckets([8 if int(c.text[1:]) % 2 else 12 for c in clips])
    pure = 0
    for batch in kb:
        buckets = {kb.bucket[clips[i].phoneme_ids] for i in batch}
        pure += len(buckets) == 1
        assert len(batch) == 16
    assert pure >= len(kb) - 1


def test_feature_cache_with_augmented_variants(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clean + augmented renditions (new speaker, room); spans follow each variant; partial renditions
    and running-speech sequences; shards are reused by a longer clip list and read back unchanged."""
    import openkws.training.loader.feature_cache as fc
    import openkws.training.loader.renditions as rd

    monkeypatch.setattr(rd, "RIR_COUNT", 3)
    monkeypatch.setattr(fc, "SHARD_CLIPS", 4)
    over = {
        "data": {"context_seconds": 0.5, "speaker_augment": {}, "partials": True, "background_per_shard": 2}
    }
    spec = config_spec(load_config("robust", over), 2)
    clips = [c for c in read_manifest(corpus) if c.split == "train"][:8]
    store = build_feature_cache(clips[:4], spec, tmp_path / "cache", progress=False)
    assert ready_prefix(clips, spec, tmp_path / "cache") == 4
    store = build_feature_cache(clips, spec, tmp_path / "cache", progress=False)
    assert store.variants == 3 and len(store.spans) == 8 and (tmp_path / "rirs").is_dir()
    for feats, spans in zip(store.feats, store.spans, strict=True):
        assert spans.shape == (3, 2)
        for f, (s, e) in zip(feats, spans, strict=True):
            n_audio = 12512 + (len(f) - 1) * 1280
            assert f.dtype == np.float16 and f.shape[1] == 96
            assert 0 < s < e <= n_audio + 1280
        assert not np.array_equal(feats[0], feats[1])
    assert len(store.background) == 4 and all(len(ids) > 3 for ids in store.background_ids)
    assert len(store.partials) == 8 and any(p is not None for p in store.partials)
    again = build_feature_cache(clips, spec, tmp_path / "cache", progress=False)
    assert np.array_equal(again.feats[2][1], store.feats[2][1])  # read back from the cache
    assert np.array_equal(again.background[3], store.background[3])


def test_batcher_adds_background_windows_with_masks() -> None:
    clips = _clips(4, 2)
    feats = [[np.random.default_rng(i).normal(size=(20, 96)).astype(np.float16)] for i in range(len(clips))]
    store = FeatureStore(clips, feats, [np.array([[8000, 14000]])] * len(clips), 8000, "speech_embedding")
    store.partials = [feats[i][0][:10] for i in range(len(clips))]
    store.background = [np.zeros((40, 96), np.float16)]
    store.background_ids = [clips[0].phoneme_ids + (2,) + (9, 9)]  # says class 0's word and another
    kb = KeywordBatches(clips, k=4, m=2)
    batcher = WindowBatcher(store, "speech_embedding", default_windows("speech_embedding"), kb.class_id,
                            train=True, background_fraction=1.0)  # fmt: skip
    indices = next(iter(kb))
    b = batcher(indices)
    assert b.background is not None and b.background_mask is not None and b.background_lengths is not None
    assert b.background.shape[0] == len(indices) and b.background.shape[1] <= b.features.shape[1]
    classes = list(dict.fromkeys(clips[i].phoneme_ids for i in indices))
    own = classes.index(clips[0].phoneme_ids)
    running = [n for n in range(len(indices)) if n % 2 == 1]
    assert not b.background_mask[running, own].any()  # running speech says class 0: no negative for it
    assert b.background_mask[::2].all()  # partials are negatives for every class, their own included
