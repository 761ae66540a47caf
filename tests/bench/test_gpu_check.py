"""bench/gpu_check.sh: its syntax, the refusal without a GPU, and its CPU-fallback run end to end
(no GPU is needed or used: on a machine with one, the CUDA path itself is what the script checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
NO_CUDA = "CUDAExecutionProvider" not in ort.get_available_providers()


def run(*args: str, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_syntax() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_unknown_option(tmp_path: Path) -> None:
    p = run("--fast", tmp_path=tmp_path)
    assert p.returncode == 64 and "unknown option --fast" in p.stderr


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA provider is present: the script takes the GPU path here")
def test_refuses_without_gpu(tmp_path: Path) -> None:
    p = run(tmp_path=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "NO GPU" in p.stdout and "--allow-cpu" in p.stdout


@pytest.mark.slow
@pytest.mark.skipif(not NO_CUDA, reason="a CUDA provider is present: the script takes the GPU path here")
def test_cpu_fallback_runs_every_step(tmp_path: Path) -> None:
    if not (ROOT / "src" / "openkws" / "models" / "default" / "model.json").is_file():
        pytest.skip("no trained model in models/default")
    p = run("--allow-cpu", "--quick", tmp_path=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "NO GPU" in out and "[readyz] onnx backend cpu, index cpu" in out and "[readyz] OK" in out
    assert "RESULT streams per CPU machine (NO GPU: fallback run) at p95 <= 500 ms:" in out
    assert out.count("RESULT keyword scoring") == 2
    assert (tmp_path / "out" / "service_cpu.json").is_file()
