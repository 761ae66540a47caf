"""Every shipped config parses, builds its model and objective, and runs one forward/backward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from openkws.training.config import CONFIG_DIR, load_config, shipped_configs
from openkws.training.nets.kws_model import build_model
from openkws.training.objective import Objective

CONFIGS = shipped_configs()
ABLATION_ROWS = (
    "triplet",
    "proxy_ms",
    "asyp",
    "asyp_mal",
    "adml",
    "adml_rpl",
    "adml_add",
    "default",
    "adml_logmel",
)


def test_every_ablation_row_is_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    assert set(ABLATION_ROWS) | {"smoke"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_steps(path: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(path)
    assert cfg.name == path.stem
    model = build_model(cfg.model)
    objective = Objective(cfg, model, num_words=6)
    k, m = 3, 2
    w = model.windows[0]
    feats = torch.randn(k * m, w, model.feature_dim)
    lengths = torch.full((k * m,), w)
    labels = torch.arange(k).repeat_interleave(m)
    text = torch.tensor([[5, 6, 7, 2, 8], [9, 10, 11, 0, 0], [12, 13, 0, 0, 0]])
    total, terms = objective(feats, lengths, labels, labels + 1, text, torch.tensor([5, 3, 2]))
    assert torch.isfinite(total)
    total.backward()
    expected = {"utt"} | {f"phn_{n}" for n in cfg.loss.phoneme.losses if cfg.loss.phoneme.enabled}
    assert expected <= set(terms)
    if cfg.loss.keyword:
        assert "kw" in terms
    if cfg.loss.mal.utterance:
        assert "mal_utt" in terms


def test_learnable_loss_parameters_reach_the_optimizer() -> None:
    """The trainer's optimizer covers the losses' parameters (AdaMS margins, SphereFace2, MAL)."""
    cfg = load_config("default")
    model = build_model(cfg.model)
    objective = Objective(cfg, model, num_words=6)
    loss_params = {n for n, _ in objective.named_parameters() if not n.startswith("model.")}
    assert any("margin" in n for n in loss_params) and any(n.startswith("kw.") for n in loss_params)
    assert any(n.startswith("mal_utt.") for n in loss_params)


def test_unknown_key_and_missing_config_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntrain: {epochz: 3}\n")
    with pytest.raises(ValueError, match="epochz"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        load_config("nope.yaml")


def test_base_inheritance_and_overrides() -> None:
    cfg = load_config("triplet", {"train": {"epochs": 2}})
    base = load_config("adml")
    assert cfg.loss.utterance == "mv_triplet" and not cfg.loss.phoneme.enabled
    assert cfg.model == base.model and cfg.train.epochs == 2
    assert (CONFIG_DIR / "default.yaml").is_file()


def test_window_lengths_exceed_context() -> None:
    for path in CONFIGS:
        model = build_model(load_config(path).model)
        assert min(model.windows) > model.context_frames + 1, path.stem
        assert np.all(np.diff(model.windows) > 0)


def test_one_optimizer_step_moves_loss_parameters() -> None:
    from openkws.training.trainer import build_optimizer

    torch.manual_seed(0)
    cfg = load_config("smoke")
    objective = Objective(cfg, build_model(cfg.model), num_words=6)
    optim, _ = build_optimizer(objective, cfg.train)
    before = {n: p.detach().clone() for n, p in objective.named_parameters() if not n.startswith("model.")}
    w = objective.model.windows[0]
    labels = torch.arange(3).repeat_interleave(2)
    text = torch.tensor([[5, 6, 7], [9, 10, 11], [12, 13, 0]])
    total, _ = objective(
        torch.randn(6, w, 96), torch.full((6,), w), labels, labels, text, torch.tensor([3, 3, 2])
    )
    total.backward()
    optim.step()
    moved = {n for n, p in objective.named_parameters() if n in before and not torch.equal(p, before[n])}
    assert any(n.startswith("phn.adams.") for n in moved), moved
    assert any(n.startswith("kw.") for n in moved) and any(n.startswith("mal_utt.") for n in moved)


def test_single_view_utterance_loss_is_refused() -> None:
    cfg = load_config("asyp", {"loss": {"utterance": "triplet"}})
    with pytest.raises(ValueError, match="text encoder would never train"):
        Objective(cfg, build_model(cfg.model), num_words=4)


def test_mal_gradient_reversal_ramps_up() -> None:
    cfg = load_config("smoke")
    objective = Objective(cfg, build_model(cfg.model), num_words=6)
    assert objective.mal_utt is not None and objective.mal_utt.grl_lambda == 0.0
    objective.set_progress(0.5)
    mid = objective.mal_utt.grl_lambda
    objective.set_progress(1.0)
    assert 0.0 < mid < objective.mal_utt.grl_lambda <= cfg.loss.mal.weight
    assert objective.mal_utt.grl_lambda == pytest.approx(cfg.loss.mal.weight, rel=1e-3)
    const = load_config("smoke", {"loss": {"mal": {"schedule": "constant"}}})
    assert Objective(const, build_model(const.model), num_words=6).mal_phn.grl_lambda == const.loss.mal.weight


@pytest.mark.parametrize("acoustic", [False, True])
def test_background_terms_with_short_margins_and_acoustic_proxies(acoustic: bool) -> None:
    """The robust recipe's background windows are held below the margin against the text proxies
    and, with `background_acoustic`, against each keyword's mean window; both send gradient."""
    torch.manual_seed(0)
    overrides = {"loss": {"background_short_bonus": 0.15, "background_acoustic": acoustic}}
    cfg = load_config("robust_full", overrides)
    model = build_model(cfg.model)
    objective = Objective(cfg, model, num_words=6)
    k, m, n_bg = 3, 2, 2
    w = model.windows[0]
    feats = torch.randn(k * m + n_bg, w, model.feature_dim)
    lengths = torch.full((k * m + n_bg,), w)
    labels = torch.arange(k).repeat_interleave(m)
    text = torch.tensor([[5, 6, 7, 2, 8], [9, 10, 11, 0, 0], [12, 13, 0, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    total, terms = objective(feats, lengths, labels, labels + 1, text, torch.tensor([5, 3, 2]), mask)
    assert torch.isfinite(total) and "background" in terms
    assert ("background_ac" in terms) == acoustic
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
