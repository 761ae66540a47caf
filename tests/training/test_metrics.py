"""Metric functions against hand-computed values; pair building; windows; DTW."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.engine.model_spec import WindowPlan
from openkws.engine.windows import window_for_duration, window_seconds
from openkws.text.phonetics import edit_distance
from openkws.training.evaluate import (
    average_precision,
    dtw_distance,
    eer,
    make_pairs,
    pair_metrics,
    roc_auc,
    roc_curve,
    summary,
)
from openkws.training.nets.windows import window_positions


def test_perfect_and_inverted_separation() -> None:
    s = np.array([0.9, 0.8, 0.3, 0.1])
    y = np.array([1, 1, 0, 0])
    assert eer(s, y) == 0.0 and roc_auc(s, y) == 1.0 and average_precision(s, y) == 1.0
    assert eer(-s, y) == 1.0 and roc_auc(-s, y) == 0.0
    # inverted: positives ranked last -> precision at recall 1/2 is 1/3, at 1 is 2/4
    assert average_precision(-s, y) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_hand_computed_case() -> None:
    # scores desc: +, -, +, -, -  (2 pos, 3 neg)
    s = np.array([0.9, 0.7, 0.6, 0.4, 0.2])
    y = np.array([1, 0, 1, 0, 0])
    # AUC: pos 0.9 beats 3 negs, pos 0.6 beats 2 negs -> 5/6
    assert roc_auc(s, y) == pytest.approx(5 / 6)
    # AP: precision at each positive: 1/1, 2/3
    assert average_precision(s, y) == pytest.approx((1 + 2 / 3) / 2)
    # ROC points (fpr, fnr): thr .9 (0, .5), .7 (1/3, .5), .6 (1/3, 0): crossing between the 1st and 2nd
    # fpr - fnr: -.5 -> -1/6 -> 1/3 ; crossing between (1/3, .5) and (1/3, 0): EER = 1/3
    assert eer(s, y) == pytest.approx(1 / 3)


def test_interpolated_eer() -> None:
    # fpr - fnr goes -0.5 -> +0.5 between two ROC points: interpolated midpoint
    s = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([1, 0, 1, 0])
    fpr, tpr, thr = roc_curve(s, y)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf
    assert eer(s, y) == pytest.approx(0.5)


def test_ties_form_one_threshold() -> None:
    s = np.array([0.5, 0.5, 0.5, 0.5])
    y = np.array([1, 0, 1, 0])
    assert roc_auc(s, y) == pytest.approx(0.5)
    assert average_precision(s, y) == pytest.approx(0.5)
    assert eer(s, y) == pytest.approx(0.5)


def test_degenerate_inputs_raise() -> None:
    with pytest.raises(ValueError, match="both"):
        eer(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc(np.array([np.nan, 0.2]), np.array([1, 0]))
    with pytest.raises(ValueError, match="length"):
        summary(np.array([0.1]), np.array([1, 0]))


def test_edit_distance_and_pairs() -> None:
    assert edit_distance("kitten", "sitting") == 3
    texts = ["cat", "cat", "bat", "dog"]
    ph = {"cat": (1, 2, 3), "bat": (4, 2, 3), "dog": (5, 6, 7)}
    inv_ids = {"cat": ("K", "AE", "T"), "bat": ("B", "AE", "T"), "dog": ("D", "AO", "G")}
    from openkws.text import load_inventory

    ph = {t: tuple(load_inventory().encode(list(p))) for t, p in inv_ids.items()}
    pairs = make_pairs(texts, ph, seed=0)
    pos = [p for p in pairs if p.kind == "positive"]
    hard = [p for p in pairs if p.kind == "hard"]
    easy = [p for p in pairs if p.kind == "easy"]
    # "dog" is 3 phone edits from everything: the protocol gives it no hard negative (none padded)
    assert len(pos) == 4 and len(easy) == 4 and len(hard) == 3
    assert all(p.text == texts[p.clip] and p.label == 1 for p in pos)
    assert all(p.text != texts[p.clip] and p.label == 0 for p in easy + hard)
    assert {p.text for p in hard if texts[p.clip] == "cat"} == {"bat"}  # one phoneme away
    m = pair_metrics(np.array([1.0 if p.label else 0.0 for p in pairs]), pairs)
    assert m["easy"]["eer"] == 0.0 and m["hard"]["auc"] == 1.0


def test_windows() -> None:
    assert window_positions(5, (8,), 1) == [(0, 5)]
    pos = window_positions(30, (8, 12), 4)
    assert (20, 8) in pos and (16, 12) in pos and all(s + w <= 30 for s, w in pos)
    assert window_for_duration("speech_embedding", 10.0, (8, 12)) == 12
    assert window_seconds("logmel", 101) == pytest.approx((512 + 100 * 160) / 16000)


def test_dtw() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 8))
    b = rng.normal(size=(15, 8))
    assert dtw_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert dtw_distance(a, b) > dtw_distance(a, a + 0.01 * rng.normal(size=a.shape))
    assert dtw_distance(a, b) == pytest.approx(dtw_distance(b, a))


def test_eval_manifest_with_segments(tmp_path) -> None:  # noqa: ANN001
    import soundfile as sf

    from openkws.training.evaluate import load_eval_audio, read_eval_manifest

    sf.write(tmp_path / "a.wav", np.arange(32000, dtype=np.float32) / 32000, 16000)
    (tmp_path / "m.csv").write_text("path,text,start,end\na.wav,hello,0.5,1.25\na.wav,world,,\n")
    clips = read_eval_manifest(tmp_path / "m.csv")
    assert [c.text for c in clips] == ["hello", "world"] and clips[0].path == tmp_path / "a.wav"
    seg = load_eval_audio(clips[0])
    assert len(seg) == 12000 and seg[0] == pytest.approx(0.25, abs=1e-4)
    assert len(load_eval_audio(clips[1])) == 32000
    with pytest.raises(ValueError, match="split"):
        read_eval_manifest(tmp_path / "m.csv", split="test")


@pytest.mark.parametrize("frontend", ["speech_embedding", "logmel"])
def test_training_windows_are_the_serving_windows(frontend: str) -> None:
    """Training's window grid (validation, trainer) is the serving window plan on the same frames."""
    from openkws.training.nets.windows import default_stride, default_windows

    windows, stride = default_windows(frontend), default_stride(frontend)
    plan = WindowPlan(windows, stride, context=5)
    for n in (max(windows) - 1, max(windows) + 3 * stride + 1, 3 * max(windows)):
        trained = sorted((s, s + w - 1) for s, w in window_positions(n, windows, stride))
        assert trained == plan.positions(n), (frontend, n)


def test_evaluation_opens_no_onnx_session_of_its_own() -> None:
    """Evaluation scores through the serving engine: no module of it talks to onnxruntime."""
    import inspect

    import openkws.training.evaluate as evaluate

    for name in ("baselines", "cost", "engine_scoring", "metrics", "pairs", "plots", "report"):
        source = inspect.getsource(getattr(evaluate, name))
        assert "import onnxruntime" not in source and "InferenceSession" not in source, name
