"""Stream training (issue 21): keyword-end labels on a real rendered stream, the bank miner, the
pooled-slices shortcut against the model's own window encoder, and the objective's closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra is not installed")

from openkws.constants import SAMPLE_RATE  # noqa: E402
from openkws.engine.model_spec import WindowPlan  # noqa: E402
from openkws.engine.windows import speech_span  # noqa: E402
from openkws.training.config import load_config  # noqa: E402
from openkws.training.nets.frontend import feature_extractor  # noqa: E402
from openkws.training.nets.kws_model import build_model  # noqa: E402
from openkws.training.stream_training.bank import PhraseBank, carrier_ngrams  # noqa: E402
from openkws.training.stream_training.batches import (  # noqa: E402
    StreamSet,
    cut_windows,
    pool_windows,
    pool_windows_reference,
    said,
)
from openkws.training.stream_training.labels import (  # noqa: E402
    contains_phrase,
    is_keyword_end,
    stream_windows,
    window_end_samples,
)
from openkws.training.stream_training.objective import smooth_margin, stream_loss  # noqa: E402
from openkws.training.stream_training.phrases import StreamItem, one_phone_neighbours, plan_items  # noqa: E402
from openkws.training.stream_training.render import render_stream  # noqa: E402

HOP, RECEPTIVE = 1280, 12512
PLAN = WindowPlan((8, 12, 16, 22, 30), 1, 5)


def _item(**kw: object) -> StreamItem:
    base = dict(idx=0, target="turn on the lights", kind="pos", spoken="turn on the lights", left="we said",
                right="in the kitchen now", voice="espeak:en-us+m3", seed=3)  # fmt: skip
    base.update(kw)
    return StreamItem(**base)  # type: ignore[arg-type]


def test_keyword_end_labels_on_a_rendered_stream() -> None:
    """The phrase end the renderer reports is where the left+phrase speech stops, and exactly the
    windows ending 0-200 ms after it are positives."""
    rng = np.random.default_rng(0)
    wave, end = render_stream(_item(right=""), rng)
    s, e = speech_span(wave)
    assert abs(e - end) <= 0.03 * SAMPLE_RATE  # the speech span ends where the label says
    assert np.abs(wave[end + 160 :]).max() < 1e-6  # after the phrase: the gap and tail are silent
    feats = feature_extractor("speech_embedding").features(wave)
    win = stream_windows(PLAN, len(feats))
    ends = window_end_samples(win[:, 1], HOP, RECEPTIVE)
    pos = is_keyword_end(ends, end)
    assert pos.any() and (ends[pos] >= end).all() and (ends[pos] <= end + 0.2 * SAMPLE_RATE).all()
    assert set(np.unique(win[pos, 1])) == {
        t for t in range(len(feats)) if 0 <= t * HOP + RECEPTIVE - end <= 3200
    }
    # every window the engine scores at a keyword-end frame is a positive, whatever its length
    expected = {(s, t) for t in set(win[pos, 1].tolist()) for s, _ in PLAN.ending_at(t)}
    assert {(int(s), int(t)) for s, t in win[pos]} == expected


def test_labels_reject_partial_and_late_windows() -> None:
    ends = window_end_samples(np.arange(30), HOP, RECEPTIVE)
    pos = is_keyword_end(ends, 30_000)
    assert not pos[ends < 30_000].any() and not pos[ends > 33_200].any()


def test_plan_pairs_a_positive_with_its_trap() -> None:
    lex = {"lights": ("L", "AY", "T", "S"), "nights": ("N", "AY", "T", "S"), "turn": ("T", "ER", "N")}
    lex |= {"on": ("AA", "N"), "the": ("DH", "AH")}
    items = plan_items(["turn on the lights"], ["we said so"], one_phone_neighbours(lex), set(lex), ["v"], 40)
    for a, b in zip(items[::2], items[1::2], strict=True):
        assert a.target == b.target and a.kind in ("pos", "repeat")
        assert b.kind in ("partial", "soundalike", "pos")
        if b.kind == "soundalike":
            assert b.spoken != b.target and len(b.spoken.split()) == len(b.target.split())
    assert {i.kind for i in items[1::2]} >= {"partial", "soundalike"}
    assert said(_item(kind="repeat", spoken="turn turn on the lights")) == (
        "turn turn on the lights",
        "turn on the lights",
    )
    assert said(_item(kind="partial", spoken="turn on the")) == ("turn on the",)


def test_bank_mines_only_phrases_the_window_does_not_say() -> None:
    phrases = ["turn on the lights", "the lights", "lights", "turn off the lights", "kitchen", "hello there"]
    bank = PhraseBank(phrases)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(len(phrases), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    bank.refresh(lambda texts: emb[[phrases.index(t) for t in texts]])
    text = "we said turn on the lights in the kitchen"
    for q in emb:  # whatever the window looks like, the miner never returns what its stream says
        (mined,) = bank.mine(q[None], [text], ["turn on the lights"], k=3)
        assert mined and all(not contains_phrase(text, p) for p in mined)
        assert set(mined) <= {"turn off the lights", "hello there"}
    with pytest.raises(RuntimeError, match="before refresh"):
        PhraseBank(["a"]).mine(emb[:1], ["x"], ["y"], k=1)
    assert len(carrier_ngrams(["a b c"], 100)) == 6  # a, b, c, a b, b c, a b c


def test_pooled_slices_equal_the_window_encoder(tmp_path: object) -> None:
    """The training shortcut (frame encoder once per stream, prefix-sum pooling) equals encoding
    each window crop with the model's own ``encode_audio``, and the plain gather form."""
    torch.manual_seed(0)
    model = build_model(load_config("robust_full").model).eval()
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, 96)).astype(np.float16) * 8 for n in (40, 33)]
    data = StreamSet(feats, np.array([30_000, 25_000]), [_item(), _item(idx=1)])
    wb = cut_windows(data, [0, 1], PLAN, HOP, RECEPTIVE, rng=None)
    with torch.no_grad():
        fast, ref = pool_windows(model, wb), pool_windows_reference(model, wb)
        assert torch.allclose(fast, ref, atol=1e-5)
        for r in (0, len(wb.positive) // 2, len(wb.positive) - 1):
            b, s = int(wb.stream_of[r]), int(wb.frame_index[r, 0])
            w = int(wb.frame_mask[r].sum()) + model.context_frames
            crop = wb.features[b : b + 1, s : s + w]
            one = model.encode_audio(crop, torch.tensor([w])).embedding[0]
            assert float(fast[r] @ one) > 0.99999


def test_objective_closed_forms() -> None:
    s_pos = torch.tensor(0.8)
    # one negative exactly at s_pos - m: log(1 + e^0) / γ = ln 2 / 16
    assert float(smooth_margin(s_pos, torch.tensor([0.7]), 16.0, 0.1)) == pytest.approx(
        np.log(2) / 16, rel=1e-5
    )
    scores = torch.tensor([[0.9, 0.1], [0.5, 0.2], [0.2, 0.3]])
    positive = torch.tensor([[True, False], [False, False], [False, False]])
    negative = torch.tensor([[False, True], [True, True], [True, True]])
    loss, best = stream_loss(scores, positive, negative, 16.0, 0.1)
    assert best.tolist() == [0, -1]  # phrase 1 has no positive: no term, no NaN
    expected = np.log1p(np.exp(16 * (0.5 - 0.9 + 0.1)) + np.exp(16 * (0.2 - 0.9 + 0.1))) / 16
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="both a positive and a negative"):
        stream_loss(scores, positive, positive, 16.0, 0.1)


def test_corpus_term_trains_the_shared_model_and_wraps_epochs(corpus: Path, shared_cache: Path) -> None:
    """Row J: the clip objective runs on the stream fit's own model (gradients reach its frame
    encoder) and keeps yielding batches past the end of an epoch."""
    from openkws.training.stream_training.corpus import CorpusTerm

    cfg = load_config(
        "smoke",
        {
            "data": {"manifest": str(corpus), "cache_dir": str(shared_cache)},
            "train": {"batches_per_epoch": 2},
        },
    )
    model = build_model(cfg.model)
    term = CorpusTerm(cfg, model)
    assert term.clips > 0
    for step in range(5):  # 2 batches an epoch: crosses two epoch boundaries
        model.zero_grad()
        loss, terms = term.loss(step / 5)
        assert torch.isfinite(loss) and "clip_utt" in terms
        loss.backward()
        grads = [p.grad for p in model.frames.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert term.epoch >= 2

    other = build_model(load_config("robust_full").model)
    with pytest.raises(ValueError, match="model section differs"):
        CorpusTerm(cfg, other)


def test_corpus_manifest_leaves_out_validation_targets(corpus: Path, tmp_path: Path) -> None:
    import csv

    from openkws.training.stream_training.corpus import corpus_manifest

    rows = list(csv.DictReader(corpus.open()))
    target = next(r["text"] for r in rows if r["split"] == "train")
    out = tmp_path / "sub" / "manifest.csv"
    kept, dropped = corpus_manifest(corpus, out, {target})
    new = list(csv.DictReader(out.open()))
    assert dropped == sum(r["split"] == "train" and r["text"] == target for r in rows) > 0
    assert kept == len(new) == len(rows) - dropped
    assert all(not (r["split"] == "train" and r["text"] == target) for r in new)
    assert all((out.parent / r["path"]).resolve().is_file() for r in new)  # paths follow the copy

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="path,text,split"):
        corpus_manifest(bad, tmp_path / "x.csv", set())
