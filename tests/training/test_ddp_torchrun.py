"""Distributed training for real: ``torchrun --nproc_per_node=2`` on CPU (gloo), the smoke config
on the espeak-ng corpus, a few epochs; both ranks join one process group of two, take the same
number of steps, and the loss falls. (Multi-GPU: the same command with nccl; docs/DEPLOY.md.)"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, os, sys
import torch
import torch.distributed as dist
from openkws.training.config import load_config
from openkws.training.trainer import train

manifest, cache, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(1)
cfg = load_config("smoke", {"data": {"manifest": manifest, "cache_dir": cache},
                            "train": {"epochs": epochs, "val_every": 100, "log_every": 1}})
res = train(cfg, out, progress=False)
rank, world = dist.get_rank(), dist.get_world_size()
backend = dist.get_backend()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world": world, "backend": backend, "steps": res.steps, "losses": res.losses}, f)
"""


def test_torchrun_two_processes_gloo(corpus: Path, shared_cache: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun (torch's launcher) is not installed: `pip install -e .[train]`")
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    t0 = time.monotonic()
    r = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nnodes=1",
            "--nproc_per_node=2",
            str(script),
            str(corpus),
            str(shared_cache),
            str(out),
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["rank"] for x in ranks] == [0, 1] and all(x["world"] == 2 for x in ranks)
    assert all(x["backend"] == "gloo" for x in ranks)
    assert ranks[0]["steps"] == ranks[1]["steps"] >= 8, ranks
    with open(out / "steps.csv") as f:
        utt = [float(row["utt"]) for row in csv.DictReader(f)]
    k = max(2, len(utt) // 4)
    assert sum(utt[-k:]) / k < 0.9 * sum(utt[:k]) / k, utt
    print(
        f"\n[ddp] torchrun 2 x gloo: {ranks[0]['steps']} steps per rank in {took:.0f} s; "
        f"utt loss {sum(utt[:k]) / k:.3f} -> {sum(utt[-k:]) / k:.3f}; epoch losses {ranks[0]['losses']}"
    )
