"""Deployment fixtures: the runtime image's environment, built for real, and a server started from it.

``runtime_venv`` runs ``docker/install-runtime.sh`` (the very script the runtime image's build stage
runs) on a copy of exactly the files that ``docker/Dockerfile`` copies, into a fresh virtual
environment: `pip install .` with no extras. ``served`` starts ``openkws serve`` from that
environment on loopback. The Prometheus and browser tests talk to that server, so a runtime
dependency missing from ``pyproject.toml`` fails all of them.

The model is ``models/default`` when it reports trained metrics, else an untrained contract-valid
export (the detection mechanics are the same; only which keyword wins differs, see ``ServedModel``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DEFAULT_MODEL = ROOT / "src" / "openkws" / "models" / "default"
UNTRAINED_SEED = 5  # as tests/service: seed 5's untrained cosines are mostly positive
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dockerfile_stages(path: Path) -> dict[str, list[str]]:
    """Instructions per stage (``FROM ... AS name``), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = m.group(1) or f"stage{len(stages)}"
            stages[current] = []
        if current:
            stages[current].append(line)
    return stages


def build_stage_sources(path: Path = DOCKER / "Dockerfile") -> list[str]:
    """What the runtime image's build stage COPYs from the build context (the repository root)."""
    sources: list[str] = []
    for line in dockerfile_stages(path)["build"]:
        parts = line.split()
        if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def is_trained(model_dir: Path) -> bool:
    spec_path = model_dir / "model.json"
    if not spec_path.is_file():
        return False
    spec = json.loads(spec_path.read_text())
    metrics = spec.get("metrics") or {}
    return not str(spec.get("model_version", "")).startswith("untrained") and any(
        isinstance(v, int | float) for v in metrics.values()
    )


@dataclass(frozen=True)
class ServedModel:
    path: Path
    trained: bool

    @property
    def threshold(self) -> float | None:
        """Enrollment threshold for tests that need a detection: the model's default when trained;
        0 for the untrained stand-in, whose scores are arbitrary (then every window fires, which
        still exercises microphone -> websocket -> engine -> event -> page)."""
        return None if self.trained else 0.0


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    if is_trained(DEFAULT_MODEL):
        return ServedModel(DEFAULT_MODEL, True)
    try:
        from openkws.training.export import export_untrained
    except ImportError as e:
        pytest.skip(
            f"models/default is not a trained model and the training extra is missing to export one: {e}"
        )
    return ServedModel(export_untrained(tmp_path_factory.mktemp("model"), seed=UNTRAINED_SEED), False)


@dataclass(frozen=True)
class RuntimeVenv:
    path: Path
    python: Path
    openkws: Path
    packages: dict[str, str]


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> RuntimeVenv:
    """A fresh venv built by docker/install-runtime.sh from the runtime image's build context."""
    work = tmp_path_factory.mktemp("runtime")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for rel in build_stage_sources():
        if rel.startswith("docker/"):
            continue  # the install script itself; run from the repository below
        s = ROOT / rel
        if s.is_dir():
            shutil.copytree(s, src / rel, ignore=ignore)
        else:
            shutil.copy2(s, src / rel)
    venv = work / "venv"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("PIP_NO_CACHE_DIR", None)  # reuse pip's cache: same packages, much faster
    proc = subprocess.run(
        ["sh", str(DOCKER / "install-runtime.sh"), str(venv), str(src)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"install-runtime.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    python = venv / "bin" / "python"
    listing = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps("
            "{d.metadata['Name'].lower(): d.version for d in m.distributions()}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
    )
    return RuntimeVenv(venv, python, venv / "bin" / "openkws", json.loads(listing.stdout))


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    model: ServedModel
    venv: RuntimeVenv
    log: Path

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="session")
def served(
    runtime_venv: RuntimeVenv, served_model: ServedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``openkws serve`` from the runtime venv on 127.0.0.1, as the container's CMD runs it."""
    work = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = work / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKWS_") and k != "PYTHONPATH"}
    env.update(
        {
            "OPENKWS_HOST": "127.0.0.1",
            "OPENKWS_PORT": str(port),
            "OPENKWS_MODEL_DIR": str(served_model.path),
            "OPENKWS_DATA_DIR": str(work / "data"),
            "OPENKWS_DEVICE": "cpu",
            "OPENKWS_INFERENCE_WORKERS": "1",
            "OPENKWS_WORKERS": "1",  # one model load: the page's tests need no second worker
            # Report every containing/contained keyword as confusable whatever the model's cosine, so the
            # page's warning is exercised deterministically (the untrained model's cosines are arbitrary).
            "OPENKWS_CONFUSABLE_MIN_COSINE": "-1",
            "OMP_NUM_THREADS": "1",
        }
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(runtime_venv.openkws), "serve", "--log-level", "warning"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", port, served_model, runtime_venv, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"openkws serve exited with {proc.returncode}:\n{served.log_tail()}")
            try:
                if httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"openkws serve not ready after {START_TIMEOUT_S:.0f} s:\n{served.log_tail()}")
            time.sleep(0.25)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def no_keywords(served: Served) -> None:
    """Start a test with an empty keyword registry (the server is shared by the session)."""
    with httpx.Client(base_url=served.url, timeout=30) as c:
        for kw in c.get("/v1/keywords", params={"limit": 1000}).json()["items"]:
            assert c.delete(f"/v1/keywords/{kw['id']}").status_code == 204


def speech_wav(path: Path, text: str = "hey jarvis", lead_s: float = 1.0, tail_s: float = 1.5) -> Path:
    """16 kHz mono PCM16 WAV: silence, ``text`` spoken by the data layer's TTS (espeak-ng), silence."""
    import numpy as np
    import soundfile as sf

    from openkws.constants import SAMPLE_RATE

    try:
        from openkws.training.data.tts import synthesize

        voice = synthesize(text, "espeak:en-us+m3")
    except ImportError:
        if shutil.which("espeak-ng") is None:
            pytest.skip("neither openkws.training.data.tts nor espeak-ng is available to synthesize speech")
        raw = path.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
        from openkws.text.tts import to_16k

        audio, rate = sf.read(raw, dtype="float32")
        voice = to_16k(audio, rate)
    audio = np.concatenate(
        [
            np.zeros(int(lead_s * SAMPLE_RATE), np.float32),
            np.asarray(voice, np.float32),
            np.zeros(int(tail_s * SAMPLE_RATE), np.float32),
        ]
    )
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path
