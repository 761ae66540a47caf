"""Row V (issue 21): the verifier's candidate mining and its combined score.

The mining must never hand the verifier a window as a negative for a phrase the stream says
there, must label only keyword-end positions positive, and must mark which phonemes a trap
changes. The combined score must rank every non-candidate below every candidate.
"""

from __future__ import annotations

import numpy as np
import torch

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import WindowPlan
from openkws.text.g2p import G2P
from openkws.training.stream_training.batches import StreamSet, full_text
from openkws.training.stream_training.labels import contains_phrase, is_keyword_end
from openkws.training.stream_training.phrases import StreamItem
from openkws.training.stream_training.validate import HIT_AFTER_S, HIT_BEFORE_S
from openkws.training.stream_training.verifier import Matcher
from openkws.training.stream_training.verifier_fit import (
    Batcher,
    Encoded,
    VerifierConfig,
    mine_candidates,
    verified_scores,
)

HOP, PHRASE_END = 1280, 40_000


def _set() -> StreamSet:
    items = [
        StreamItem(0, "turn on the lights", "pos", "turn on the lights", "please", "now", "v1", 0),
        StreamItem(1, "turn on the lights", "soundalike", "turn off the lights", "please", "", "v2", 1),
    ]
    feats = [np.zeros((60, 4), np.float16) for _ in items]
    return StreamSet(feats, np.array([PHRASE_END, PHRASE_END]), items)


def _encoded(phrases: list[str]) -> Encoded:
    ends = np.arange(20_000, 60_000, HOP)  # positions from 1.25 s before to 1.25 s after the end
    rng = np.random.default_rng(0)
    return Encoded(
        keys=[rng.normal(size=(55, 8)).astype(np.float16) for _ in range(2)],
        end_stream=np.repeat([0, 1], len(ends)).astype(np.int32),
        end_frame=np.tile(np.arange(len(ends)) + 10, 2).astype(np.int32),
        end_sample=np.tile(ends, 2),
        scores=np.full((2 * len(ends), len(phrases)), 0.9, np.float16),  # every pair is a candidate
    )


def test_mining_labels_keyword_ends_and_never_a_said_phrase_as_negative() -> None:
    data = _set()
    phrases = ["now", "please", "turn off the lights", "turn on the lights"]
    g2p = G2P()
    ids = [tuple(g2p(p).ids) for p in phrases]
    enc = _encoded(phrases)
    c = mine_candidates(enc, data, phrases, ids, VerifierConfig(candidate=0.5, negatives_per_stream=10_000))
    assert len(c.end) == len(c.label) == len(c.phones) > 0
    for e, q, y, ph in zip(c.end, c.phrase, c.label, c.phones, strict=True):
        i, phrase = int(enc.end_stream[e]), phrases[q]
        item = data.items[i]
        lag = int(enc.end_sample[e]) - PHRASE_END
        if y == 1:
            assert phrase == item.spoken and is_keyword_end(np.array([enc.end_sample[e]]), PHRASE_END)[0]
            assert ph is not None and ph.all()
        elif phrase == item.spoken:  # its own phrase: a negative only far from where it ends
            assert not (-HIT_BEFORE_S * SAMPLE_RATE <= lag <= HIT_AFTER_S * SAMPLE_RATE), lag
        else:
            assert not contains_phrase(full_text(item), phrase), (phrase, full_text(item))
    # "please" opens both streams: never a negative; "now" closes only the first
    assert "please" not in {phrases[q] for q in c.phrase}
    assert {int(enc.end_stream[e]) for e, q in zip(c.end, c.phrase, strict=True) if phrases[q] == "now"} == {
        1
    }
    # every keyword-end position of the positive stream is a positive
    kw = is_keyword_end(enc.end_sample[enc.end_stream == 0], PHRASE_END).sum()
    assert int(((c.label == 1) & (enc.end_stream[c.end] == 0)).sum()) == kw > 0
    # the trap near its end: "off" changes the phonemes of "on", the rest match
    trap = [ph for e, q, ph in zip(c.end, c.phrase, c.phones, strict=True)
            if enc.end_stream[e] == 1 and phrases[q] == "turn on the lights" and ph is not None]  # fmt: skip
    assert trap, "the sound-alike's candidates near its end carry phoneme labels"
    assert 0 < trap[0].sum() < len(trap[0]), trap[0]


def test_combined_score_ranks_non_candidates_below_every_candidate() -> None:
    phrases = ["turn on the lights", "turn off the lights"]
    enc = _encoded(phrases)
    rng = np.random.default_rng(1)
    enc.scores = rng.uniform(0.0, 0.9, size=enc.scores.shape).astype(np.float16)
    plan = WindowPlan(windows=(8, 12), stride=1, context=2)
    phn = [torch.randn(5, 8), torch.randn(6, 8)]
    matcher = Matcher(key_dim=8, dim=8, heads=2, max_frames=max(plan.windows)).eval()
    out = verified_scores(matcher, enc, Batcher(enc, phn, plan), candidate=0.5)
    cand = enc.scores.astype(np.float32) >= 0.5
    assert cand.any() and (~cand).any()
    assert out[~cand].max() < out[cand].min()
