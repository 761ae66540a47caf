"""The runtime image's dependency set, installed for real into a fresh venv (no extras, no torch), serves:
/healthz, /readyz, the web page and its assets (package data), /metrics; and the image's HEALTHCHECK
script tells a ready server from a dead one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import httpx
import pytest

from tests.deploy.conftest import DOCKER, ROOT, RuntimeVenv, Served, build_stage_sources, free_port

STATIC = ROOT / "src" / "openkws" / "server" / "static"


def test_build_context_is_what_the_dockerfile_copies() -> None:
    assert build_stage_sources() == [
        "pyproject.toml",
        "README.md",
        "src",
        "docker/install-runtime.sh",
    ]


def test_runtime_venv_has_no_torch(runtime_venv: RuntimeVenv) -> None:
    pkgs = runtime_venv.packages
    assert "openkws" in pkgs
    heavy = sorted(p for p in pkgs if p == "torch" or p.startswith(("nvidia-", "torch")))
    assert not heavy, f"runtime environment contains {heavy}"
    for needed in ("onnxruntime", "faiss-cpu", "fastapi", "uvicorn", "numpy"):
        assert needed in pkgs, f"{needed} missing from the runtime environment"
    assert "pip" not in pkgs, "install-runtime.sh leaves no installer behind"
    r = subprocess.run(
        [str(runtime_venv.python), "-c", "import openkws, sys; print(openkws.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=runtime_venv.path,
    )
    assert r.stdout.strip().startswith(str(runtime_venv.path)), (
        "the venv's own copy of the package, not the repo's"
    )


# What python:3.11-slim-bookworm (the runtime base) has of Debian: the required packages. A wheel
# that needs any other system library (libsndfile1, libgomp1, ...) would fail in the image.
SLIM_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def test_native_libraries_resolve_in_a_slim_image(runtime_venv: RuntimeVenv) -> None:
    """Every shared object in the runtime venv links only against itself (bundled wheel libraries)
    and Debian's required libraries, so it loads in the slim base image without apt-get."""
    ldd, dpkg = shutil.which("ldd"), shutil.which("dpkg")
    if ldd is None or dpkg is None:
        pytest.skip("ldd and dpkg (Debian) are needed to map libraries to packages")
    outside: dict[str, set[str]] = {}
    objects = [p for p in runtime_venv.path.rglob("*.so*") if p.is_file()]
    assert len(objects) > 20, "the native extensions of numpy, onnxruntime, faiss, soxr, ..."
    bundled = {p.name for p in objects}
    for so in objects:
        out = subprocess.run([ldd, str(so)], capture_output=True, text=True, timeout=60).stdout
        for line in out.splitlines():
            # a wheel's bundled library (faiss_cpu.libs/...) is found at run time through the
            # extension's RPATH, which ldd of the bundled library alone does not see
            if "not found" in line:
                assert line.split()[0] in bundled, f"{so.name}: {line.strip()}"
                continue
            m = re.search(r"=> (/\S+)", line)
            if m and not m.group(1).startswith(str(runtime_venv.path)):
                outside.setdefault(m.group(1), set()).add(so.name)
    packages: dict[str, str] = {}
    for lib in outside:
        # usrmerge: dpkg may know a library under /lib or /usr/lib, and by its versioned file name
        real = os.path.realpath(lib)
        candidates = dict.fromkeys([lib, real, real.removeprefix("/usr"), lib.removeprefix("/usr")])
        owners = [
            subprocess.run([dpkg, "-S", c], capture_output=True, text=True, timeout=60).stdout
            for c in candidates
        ]
        owner = next((o for o in owners if o), "")
        packages[lib] = owner.split(":")[0] if owner else "?"
    foreign = {
        lib: (pkg, sorted(outside[lib])[:3])
        for lib, pkg in packages.items()
        if pkg not in SLIM_IMAGE_PACKAGES
    }
    assert not foreign, f"libraries outside the slim base image: {foreign}"


def test_served_from_runtime_env(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["backend"]["onnx"] == "cpu", ready
        assert ready["model_version"] == served_model_version(served)
        metrics = c.get("/metrics").text
    for name in (
        "openkws_active_streams",
        "openkws_detection_latency_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert re.search(rf"^{name}[{{ ]", metrics, re.MULTILINE), f"{name} not exported"


def served_model_version(served: Served) -> str:
    import json

    return str(json.loads((served.model.path / "model.json").read_text())["model_version"])


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href") and v:
                self.refs.append(v)


def test_page_and_assets_are_served_locally(served: Served) -> None:
    """GET / is the page; everything it loads comes from the package's static files, none from a CDN."""
    with httpx.Client(base_url=served.url, timeout=30) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        parser = _Refs()
        parser.feed(page.text)
        loaded = [r for r in parser.refs if r.startswith("static/")]
        assert {"static/app.js", "static/style.css"} <= set(loaded)
        for ref in loaded + ["static/pcm-worklet.js"]:
            r = c.get("/" + ref)
            assert (
                r.status_code == 200 and r.content == (STATIC / ref.removeprefix("static/")).read_bytes()
            ), ref
        assert c.get("/static/nope.js").status_code == 404
    for ref in parser.refs:
        assert not re.match(r"^(https?:)?//", ref), f"external reference {ref}"
    for f in STATIC.iterdir():
        text = f.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), (
            f"{f.name} refers to something outside the service"
        )


def test_healthcheck_script(served: Served) -> None:
    script = str(DOCKER / "healthcheck.py")
    py = str(served.venv.python)
    env = {**os.environ, "OPENKWS_PORT": str(served.port)}
    assert subprocess.run([py, script], env=env, timeout=30).returncode == 0
    env["OPENKWS_PORT"] = str(free_port())  # nothing listens there
    dead = subprocess.run([py, script], env=env, capture_output=True, text=True, timeout=30)
    assert dead.returncode == 1 and "unhealthy" in dead.stderr
