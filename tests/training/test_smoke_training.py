"""A short real training run on a few hundred espeak-ng clips: the loss falls; checkpoints resume;
the checkpoint exports to a contract-valid model dir; `openkws eval pairs` scores it; DDP world 1."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from openkws.engine.model_spec import load_spec
from openkws.training.config import load_config
from openkws.training.trainer import train


def _cfg(corpus: Path, cache: Path, **train_over: object):
    return load_config(
        "smoke", {"data": {"manifest": str(corpus), "cache_dir": str(cache)}, "train": train_over}
    )


@pytest.fixture(scope="module")
def smoke_run(corpus: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("smoke")
    res = train(_cfg(corpus, shared_cache), root / "run", progress=False)
    return res, root


def test_loss_falls(smoke_run) -> None:
    res, root = smoke_run
    assert res.epochs == 8 and res.steps == 64
    with open(root / "run" / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    # The metric-learning loss falls steadily. The total also carries the adversarial MAL terms,
    # which rise whenever the encoders win the game, so it falls only to its best epoch.
    utt = [float(r["utt"]) for r in rows]
    assert sum(utt[-4:]) / 4 < 0.8 * sum(utt[:4]) / 4, utt
    assert min(res.losses) < 0.8 * res.losses[0], res.losses
    assert {
        "utt",
        "phn_asyp",
        "phn_adams",
        "mal_utt",
        "mal_phn",
        "kw",
        "degenerate_utt",
        "mal_acc_utt",
    } <= set(rows[0])
    assert all(0.0 <= float(r["mal_acc_utt"]) <= 1.0 for r in rows)
    with open(root / "run" / "epochs.csv") as f:
        epochs = list(csv.DictReader(f))
    assert epochs[-1]["val_easy_eer"] != "" and 0.0 <= float(epochs[-1]["val_easy_eer"]) <= 1.0
    assert (root / "run" / "checkpoints" / "best.pt").is_file()


def test_resume_continues(smoke_run, corpus: Path, shared_cache: Path) -> None:
    res, root = smoke_run
    more = train(_cfg(corpus, shared_cache, epochs=9), root / "run", resume=True, progress=False)
    assert more.epochs == 9 and more.steps == res.steps + 8
    with open(root / "run" / "epochs.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 10))


def test_export_and_eval_pairs(smoke_run, corpus: Path) -> None:
    from openkws.cli import app

    res, root = smoke_run
    runner = CliRunner()
    out = root / "model"
    ckpt = str(root / "run" / "checkpoints" / "best.pt")
    r = runner.invoke(
        app,
        ["export", "--checkpoint", ckpt, "--out", str(out), "--threshold", "0.7", "--bank-minutes", "0.3"],
    )
    assert r.exit_code == 0, r.output
    assert (out / "calibration_bank.npz").is_file()  # sensitivity in FA/h needs it
    spec = load_spec(out)
    assert spec.recipe["config_name"] == "smoke" and spec.embedding_dim == 64
    assert spec.default_threshold == 0.7  # calibrated after training, not the config's 0.5
    r = runner.invoke(app, ["export", "--checkpoint", ckpt, "--out", str(root / "bad"), "--threshold", "1.5"])
    assert r.exit_code == 2 and "less than or equal to 1" in r.output  # refused, saying the range
    card = (out / "MODEL_CARD.md").read_text()
    assert "openkws train run --config smoke" in card
    # evaluation manifest in the public format: path,text only, recordings the model never saw
    with open(corpus) as f:
        dev = [row for row in csv.DictReader(f) if row["split"] == "dev"]
    man = root / "eval.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text"])
        w.writerows([[str(corpus.parent / row["path"]), row["text"]] for row in dev])
    r = runner.invoke(
        app, ["eval", "pairs", "--model", str(out), "--manifest", str(man), "--out", str(root / "eval")]
    )
    assert r.exit_code == 0, r.output
    report = json.loads((root / "eval" / "pairs.json").read_text())
    (system,) = report["systems"].values()
    assert set(system) == {"easy", "hard"} and 0.0 <= system["easy"]["eer"] <= 1.0
    assert (root / "eval" / "pairs.png").stat().st_size > 10_000


def test_ddp_world_size_one(
    corpus: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    try:
        res = train(_cfg(corpus, shared_cache, epochs=1), tmp_path / "run", progress=False, max_steps=2)
        assert res.steps == 2 and dist.is_initialized() and dist.get_world_size() == 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert "WORLD_SIZE" in os.environ


def test_logmel_on_the_fly_path_runs(
    corpus: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log-mel front-end featurises (and augments) waveforms in a DataLoader worker."""
    import openkws.training.loader.renditions as rd

    monkeypatch.setattr(rd, "RIR_COUNT", 3)  # a small room bank: simulating 100 rooms takes a minute
    over = {
        "model": {"frontend": "logmel", "acoustic": {"front_kernel": 5, "blocks": [{"kernel": 3}, {"kernel": 3}], "se_window": 5}},
        "data": {"manifest": str(corpus), "cache_dir": str(shared_cache), "num_workers": 1},
        "train": {"epochs": 1, "batches_per_epoch": 3},
    }  # fmt: skip
    res = train(load_config("smoke", over), tmp_path / "run", progress=False)
    assert res.steps == 3 and all(map(torch.isfinite, map(torch.tensor, res.losses)))
