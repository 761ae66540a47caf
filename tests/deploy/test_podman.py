"""The CPU image built and run for real with podman (../shared/CONTAINERS.md), and the Kubernetes
openkws Deployment (deploy/) run with ``podman kube play``.

The image is docker/Dockerfile as it is, on a locally bootstrapped Python base, with the
``postgres`` extra (what deploy/ and compose's ``replicas`` profile run). In the container:
``/readyz``, one enrollment, one detection in a spoken WAV, and a ``proxy: "tts"`` enrollment (the
image's espeak-ng and flite). Every container and image made here is removed; ports bind 127.0.0.1.
Wall times are printed (``-s``) and kept in the session's ``podman.timings``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.conftest import ROOT, free_port, is_trained, speech_wav
from tests.deploy.containers import Podman, PodmanUnavailable, podman_session, unique
from tests.deploy.test_manifests import by_kind, render

READY_TIMEOUT_S = 180.0
MODEL = ROOT / "src" / "openkws" / "models" / "default"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    try:
        yield from podman_session(tmp_path_factory.mktemp("podman"))
    except PodmanUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def image(podman: Podman) -> Iterator[str]:
    if not is_trained(MODEL):
        pytest.skip("models/default is not a trained model: the image would serve an untrained one")
    reuse = os.environ.get("OPENKWS_TEST_IMAGE")  # development: an image built before (kept)
    if reuse and podman.image_exists(reuse):
        yield reuse
        return
    t0 = time.monotonic()
    base = podman.ensure_base()
    tag = f"localhost/{unique('openkws-test')}:cpu"
    podman.build(tag, ROOT / "docker" / "Dockerfile", ROOT, f"PYTHON_IMAGE={base}", "OPENKWS_EXTRAS=postgres")
    print(f"\n[podman] base + CPU image ready in {time.monotonic() - t0:.0f} s ({podman.timings})")
    yield tag


def _wait_ready(url: str, logs: Any, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(f"{url}/readyz", timeout=3)
            if r.status_code == 200:
                ready: dict[str, Any] = r.json()
                return ready
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url}/readyz not 200 after {timeout:.0f} s:\n{logs()}")
        time.sleep(0.5)


def _enroll_and_detect(url: str, wav: Path, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with httpx.Client(base_url=url, timeout=60, headers=headers) as c:
        r = c.post("/v1/keywords", json={"text": "hey jarvis"})
        assert r.status_code in (200, 201), r.text
        r = c.post("/v1/detect", files={"file": ("speech.wav", wav.read_bytes(), "audio/wav")})
        assert r.status_code == 200, r.text
        assert [d["text"] for d in r.json()["detections"]] == ["hey jarvis"], r.json()


def test_cpu_image_serves_enrolls_detects_and_has_tts(podman: Podman, image: str, tmp_path: Path) -> None:
    wav = speech_wav(tmp_path / "speech.wav")
    port = free_port()
    name = unique("openkws-test")
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", image)
    try:
        url = f"http://127.0.0.1:{port}"
        ready = _wait_ready(url, lambda: podman("logs", name, check=False).stdout[-3000:])
        started = time.monotonic() - t0
        assert ready["backend"] == {"onnx": "cpu", "index": "cpu", "database": "sqlite"}
        _enroll_and_detect(url, wav)
        r = httpx.post(f"{url}/v1/keywords", json={"text": "okay computer", "proxy": "tts"}, timeout=60)
        assert r.status_code in (200, 201), f"proxy tts in the image: {r.status_code} {r.text}"
        assert r.json()["proxy"] == "tts"
        user = podman("exec", name, "id", "-u").stdout.strip()
        assert user == "10001", "the image runs as its non-root user"
        assert podman("exec", name, "sh", "-c", "command -v espeak-ng && command -v flite").returncode == 0
        inspect = podman("inspect", name, "--format", "{{json .HostConfig.PortBindings}}").stdout
        assert '"HostIp":"127.0.0.1"' in inspect.replace(" ", "")
        print(f"\n[podman] container ready in {started:.1f} s; enroll, detect and tts enroll passed")
    finally:
        podman("rm", "-f", name, check=False)


def _kube_yaml(image: str, port: int) -> str:
    """The production overlay's Deployment as rendered, with the test image and a port published on
    127.0.0.1. Its Secret is made with ``podman secret create`` (:func:`_database_secret`)."""
    docs = render("overlays/production")
    dep = by_kind(docs, "Deployment", "openkws")
    dep["spec"]["replicas"] = 1
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    c["image"] = image
    c["imagePullPolicy"] = "Never"
    c["ports"][0].update({"hostPort": port, "hostIP": "127.0.0.1"})
    return yaml.safe_dump(dep)


def _database_secret(podman: Podman) -> None:
    """``openkws-database`` as podman 4.3's kube play reads a secretKeyRef: a podman secret holding a
    JSON map of key -> base64 value (it ignores Secret documents in the YAML). The URL is SQLite on
    the pod's emptyDir: there is no PostgreSQL in this pod."""
    data = {"url": base64.b64encode(b"sqlite:////var/lib/openkws/keywords.db").decode()}
    podman("secret", "rm", "openkws-database", check=False)
    podman("secret", "create", "openkws-database", "-", input=json.dumps(data).encode())


def test_kube_play_runs_the_k8s_deployment(podman: Podman, image: str, tmp_path: Path) -> None:
    wav = speech_wav(tmp_path / "speech.wav")
    port = free_port()
    kube = tmp_path / "openkws-kube.yaml"
    kube.write_text(_kube_yaml(image, port))
    _database_secret(podman)
    t0 = time.monotonic()
    r = podman("kube", "play", str(kube), check=False, timeout=300)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        pods = podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
        pod = next(p for p in pods if p.startswith("openkws"))
        ctrs = podman("ps", "--pod", "--filter", f"pod={pod}", "--format", "{{.Names}}").stdout.split()
        ctr = next(n for n in ctrs if "openkws" in n and not n.endswith("-infra"))
        url = f"http://127.0.0.1:{port}"
        ready = _wait_ready(url, lambda: podman("logs", ctr, check=False).stdout[-3000:])
        assert ready["backend"]["database"] == "sqlite"
        # The Deployment turns auth on: a key made with the CLI inside the pod, as an operator would.
        token = podman(
            "exec", ctr, "openkws", "keys", "create", "--tenant", "acme", "--scope", "admin"
        ).stdout
        _enroll_and_detect(url, wav, token.strip())
        # The Deployment's security context, as podman applied it.
        assert podman("exec", ctr, "id", "-u").stdout.strip() == "10001"
        assert podman("inspect", ctr, "--format", "{{.HostConfig.ReadonlyRootfs}}").stdout.strip() == "true"
        write = podman("exec", ctr, "sh", "-c", "touch /opt/x", check=False)
        assert write.returncode != 0, "the root filesystem is read-only"
        print(f"\n[podman] kube play Deployment ready and detecting in {time.monotonic() - t0:.1f} s")
    finally:
        podman("kube", "down", str(kube), check=False, timeout=120)
        podman("secret", "rm", "openkws-database", check=False)
