"""Podman for the container tests (../shared/CONTAINERS.md: there is no Docker engine here and no
registry is reachable).

- a private ``containers.conf`` (runc, no default ulimits): crun cannot set resource limits in these VMs;
- the base image ``python:3.11-slim-bookworm`` is stood in for by Debian bookworm bootstrapped from the
  machine's own apt mirror (debootstrap) plus ``docker/Dockerfile.base``; it is built once per test
  session and reused when it already exists (then it is not removed);
- every image and container a test makes is removed afterwards; published ports bind 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "localhost/python:3.11-slim-bookworm"
DEBIAN_TAG = "localhost/debian-base:bookworm"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class PodmanUnavailable(RuntimeError):
    pass


def apt_mirror(
    sources: Path = Path("/etc/apt/sources.list.d"), legacy: Path = Path("/etc/apt/sources.list")
) -> str:
    """The first Debian mirror the machine's apt sources name (deb822 ``URIs:`` or one-line ``deb``)."""
    texts = [p.read_text() for p in sorted(sources.glob("*.sources"))] if sources.is_dir() else []
    for t in texts:
        for m in re.finditer(r"^URIs:\s*(\S+)", t, re.MULTILINE):
            if "security" not in m.group(1):
                return m.group(1)
    if legacy.is_file():
        m2 = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", legacy.read_text(), re.MULTILINE)
        if m2:
            return m2.group(1)
    return "http://deb.debian.org/debian"


@dataclass
class Podman:
    conf: Path
    made_images: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    images_before: set[str] = field(default_factory=set)  # ids (with layers) that existed before us

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, timeout: float = 600, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=input is None,
            timeout=timeout,
            input=input,
        )
        if check and r.returncode != 0:
            out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode(errors="replace")
            err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
            raise RuntimeError(
                f"podman {' '.join(args[:3])} ... failed ({r.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
            )
        return r

    def image_exists(self, tag: str) -> bool:
        return self("image", "exists", tag, check=False).returncode == 0

    def build(
        self,
        tag: str,
        dockerfile: Path,
        context: Path,
        *build_args: str,
        timeout: float = 900,
        pip_ca: bool = True,
    ) -> None:
        """``podman build`` on the host network; ``pip_ca``: with this machine's CA bundle mounted for pip
        (CONTAINERS.md, 4; not for the base, whose apt installs ca-certificates onto that path)."""
        t0 = time.monotonic()
        args = ["build", "--network", "host", "--format", "docker", "-f", str(dockerfile), "-t", tag]
        if pip_ca and CA_BUNDLE.is_file():
            args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "--env", f"PIP_CERT={CA_BUNDLE}"]
        for a in build_args:
            args += ["--build-arg", a]
        self(*args, str(context), timeout=timeout)
        self.made_images.append(tag)
        self.timings[f"build {tag}"] = time.monotonic() - t0

    def ensure_base(self) -> str:
        """The Python base image (``PYTHON_IMAGE`` of the Dockerfiles): reused, or bootstrapped here."""
        if self.image_exists(BASE_TAG):
            return BASE_TAG
        t0 = time.monotonic()
        if not self.image_exists(DEBIAN_TAG):
            if shutil.which("debootstrap") is None:
                raise PodmanUnavailable("debootstrap is not installed (`make setup` installs it)")
            rootfs = Path(tempfile.mkdtemp(prefix="openkws-rootfs-", dir="/var/tmp"))
            try:
                subprocess.run(
                    ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), apt_mirror()],
                    check=True,
                    capture_output=True,
                    timeout=900,
                )
                tar = subprocess.run(
                    ["tar", "-C", str(rootfs), "-c", "."], check=True, capture_output=True, timeout=300
                ).stdout
                self("import", "-", DEBIAN_TAG, input=tar, timeout=300)
                self.made_images.append(DEBIAN_TAG)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)
        self.build(
            BASE_TAG,
            ROOT / "docker" / "Dockerfile.base",
            ROOT / "docker",
            f"DEBIAN_IMAGE={DEBIAN_TAG}",
            pip_ca=False,
        )
        self.timings["base image"] = time.monotonic() - t0
        return BASE_TAG

    def image_ids(self) -> set[str]:
        return set(self("images", "-a", "-q", "--no-trunc", check=False).stdout.split())

    def cleanup(self, keep_base: bool = False) -> None:
        """Remove the tagged images made here, then every other image id (build stages, layers, the
        pause image of kube play) that did not exist before; a kept base keeps its own layers."""
        for tag in reversed(self.made_images):
            if keep_base and tag in (BASE_TAG, DEBIAN_TAG):
                continue
            self("rmi", "-f", tag, check=False, timeout=120)
        keep = set(self.images_before)
        if keep_base:
            for tag in (BASE_TAG, DEBIAN_TAG):
                keep |= set(self("images", "-q", "--no-trunc", tag, check=False).stdout.split())
        for _ in range(3):  # children first: retry what was still in use
            left = sorted(self.image_ids() - keep)
            if not left:
                break
            for image_id in left:
                self("rmi", image_id, check=False, timeout=120)


@dataclass
class Image:
    tag: str
    podman: Podman


def podman_session(tmp: Path) -> Iterator[Podman]:
    """A :class:`Podman` with a private config; removes what it made (``OPENKWS_KEEP_BASE_IMAGE=1``
    keeps the bootstrapped base for the next run)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        raise PodmanUnavailable("podman and runc are not installed (`make setup` installs them)")
    if os.geteuid() != 0:
        raise PodmanUnavailable(
            "the container tests run podman as root (CONTAINERS.md); this user is not root"
        )
    conf = tmp / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    p = Podman(conf)
    p.images_before = p.image_ids()
    try:
        yield p
    finally:
        p.cleanup(keep_base=os.environ.get("OPENKWS_KEEP_BASE_IMAGE") == "1")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
