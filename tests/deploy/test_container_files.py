"""Container files checked by the real tools: hadolint on every Dockerfile, the compose file against
the Compose Specification schema (and `docker compose config` where a compose client exists),
`promtool check config` on the Prometheus config, and the cross-file facts those tools cannot see
(volume paths, provisioning paths, the dashboard's datasource)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DOCKER, ROOT, dockerfile_stages

DOCKERFILES = ("Dockerfile", "Dockerfile.gpu", "Dockerfile.train", "Dockerfile.base")
COMPOSE = DOCKER / "compose.yaml"
PROMETHEUS_YML = DOCKER / "prometheus" / "prometheus.yml"
GRAFANA = DOCKER / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "openkws.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`make setup` installs it)")
    return path


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


# --- Dockerfiles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    hadolint = _tool("hadolint")
    r = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / name)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and not r.stdout.strip(), f"hadolint {name}:\n{r.stdout}{r.stderr}"


def test_runtime_image_shape() -> None:
    """Multi-stage; the final stage is non-root, has a HEALTHCHECK, carries models/default, and gets
    its environment from the build stage (no pip, no compilers, no torch in it)."""
    stages = dockerfile_stages(DOCKER / "Dockerfile")
    assert list(stages) == ["build", "runtime"], list(stages)
    runtime = "\n".join(stages["runtime"])
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root"), f"runtime USER is {user}"
    assert re.search(r"^HEALTHCHECK .*healthcheck\.py", runtime, re.MULTILINE)
    assert re.search(r"^COPY src/openkws/models/default /opt/openkws/models/default$", runtime, re.MULTILINE)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    # The one system install: the TTS engines behind `proxy: "tts"` (tests/deploy/test_podman.py runs it).
    apt = re.findall(r"apt-get install[^&]*", runtime)
    assert len(apt) == 1 and apt[0].split()[-2:] == ["espeak-ng", "flite"], apt
    assert not re.search(r"\b(pip|gcc|g\+\+|build-essential|torch)\b", runtime.replace("/opt/openkws", "")), (
        "the runtime stage installs no Python packages or compilers itself"
    )
    build = "\n".join(stages["build"])
    assert 'ARG OPENKWS_EXTRAS=""' in build, "the default image installs no extras"
    assert re.search(r'install-runtime\.sh /opt/venv /src "\$\{OPENKWS_EXTRAS\}"', build)
    assert "OPENKWS_MODEL_DIR=/opt/openkws/models/default" in runtime


def test_gpu_and_train_images() -> None:
    gpu = DOCKER.joinpath("Dockerfile.gpu").read_text()
    cuda = re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.\S+-cudnn-runtime-", gpu, re.MULTILINE)
    assert cuda, "a CUDA runtime base with cuDNN"
    assert 'ARG OPENKWS_EXTRAS="gpu"' in gpu
    assert "PIP_CONSTRAINT=/src/constraints-gpu.txt" in gpu
    pins = dict(
        line.split("==")
        for line in DOCKER.joinpath("constraints-gpu.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    # The CUDA major each pinned onnxruntime-gpu's CUDA provider links against (libcudart.so.N), as
    # read with ldd from the installed wheel. A new pin is added here after the same check.
    known_cuda_major = {"1.31.1": "13"}
    pin = pins["onnxruntime-gpu"]
    assert pin in known_cuda_major, f"check which CUDA onnxruntime-gpu {pin} needs and add it here"
    assert cuda.group(1) == known_cuda_major[pin], (
        f"base CUDA {cuda.group(1)}, onnxruntime-gpu {pin} needs {known_cuda_major[pin]}"
    )
    assert "faiss-gpu-cu12" in pins
    pyproject = (ROOT / "pyproject.toml").read_text()
    gpu_extra = re.search(r"^gpu = \[(.*)\]", pyproject, re.MULTILINE)
    assert gpu_extra and "onnxruntime-gpu" in gpu_extra.group(1) and "faiss-gpu" in gpu_extra.group(1)
    train = DOCKER.joinpath("Dockerfile.train").read_text()
    pinned = re.search(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text())
    assert pinned, "the Makefile pins torch"
    assert f"ARG TORCH_VERSION={pinned.group(1)}" in train, "Dockerfile.train pins the Makefile's torch"
    assert f'"torch=={pinned.group(1)}"' in pyproject, "the train extra pins the same torch"
    assert '".[train,dev]"' in train


def test_install_script_refuses_torch() -> None:
    """The runtime install fails loudly if torch ever lands in the environment."""
    script = DOCKER.joinpath("install-runtime.sh").read_text()
    assert "find_spec('torch')" in script and "exit 1" in script


def test_dockerignore_keeps_data_and_caches_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (
        "data",
        "runs",
        "bench/out",
        "cache",
        ".git",
        "**/__pycache__",
        "**/.pytest_cache",
        "**/.mypy_cache",
        "**/.ruff_cache",
        "**/*.pt",
    ):
        assert needed in patterns, f".dockerignore lacks {needed}"
    for needed_in_context in ("src", "docker", "pyproject.toml", "README.md"):
        assert needed_in_context not in patterns, f".dockerignore must not drop {needed_in_context}"


# --- compose ------------------------------------------------------------------------------------------
def test_compose_schema(tmp_path: Path) -> None:
    """The Compose Specification's JSON schema (vendored in check-jsonschema) accepts the file."""
    cj = _tool("check-jsonschema")
    r = subprocess.run(
        [cj, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "compose.yaml"
    bad.write_text(
        COMPOSE.read_text().replace(
            "    restart: unless-stopped\n", "    restart: unless-stopped\n    bogus: 1\n", 1
        )
    )
    r = subprocess.run(
        [cj, "--builtin-schema", "vendor.compose-spec", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0 and "bogus" in r.stdout, "the schema check must be able to fail"


def test_docker_compose_config() -> None:
    docker = _tool("docker")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip(
            "the docker client here has no compose plugin (`docker compose version` fails); "
            "test_compose_schema validates the file against the Compose Specification instead"
        )
    r = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "gpu", "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_compose_wiring() -> None:
    c = _compose()
    services = c["services"]
    assert {"openkws", "openkws-gpu", "prometheus", "grafana"} <= set(services)
    for name in ("openkws", "openkws-gpu"):
        s = services[name]
        assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).is_file()
        assert "openkws" in s["networks"]["default"]["aliases"], "Prometheus finds replicas by this alias"
        vol, target = s["volumes"][0].split(":")[:2]
        assert vol in c["volumes"], f"{vol} is a named volume"
        assert target == s["environment"]["OPENKWS_DATA_DIR"] == "/var/lib/openkws"
    assert "profiles" not in services["openkws"], "the CPU service starts with a plain `up`"
    assert services["openkws-gpu"]["profiles"] == ["gpu"]
    devices = services["openkws-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # every bind mount's source exists in the repository
    for s in services.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), f"bind source {src} missing"
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert (
        Path(COMPOSE.parent / "prometheus/prometheus.yml").resolve()
        == (
            COMPOSE.parent / [k for k, t in prom_mounts.items() if t == "/etc/prometheus/prometheus.yml"][0]
        ).resolve()
    )


# --- Prometheus and Grafana --------------------------------------------------------------------------
def test_promtool_check_config() -> None:
    promtool = _tool("promtool")
    r = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "SUCCESS" in (r.stdout + r.stderr), r.stdout + r.stderr


def test_prometheus_scrapes_openkws_by_alias() -> None:
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "openkws")
    assert job["metrics_path"] == "/metrics"
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["openkws"] and sd["port"] == 8000


def test_grafana_provisioning_matches_compose() -> None:
    c = _compose()
    mounts = dict(v.split(":")[:2] for v in c["services"]["grafana"]["volumes"] if v.startswith("."))
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "openkws.yml").read_text())["providers"][
        0
    ]
    assert mounts["./grafana/dashboards"] == prov["options"]["path"], (
        "provider path = where compose mounts the JSON"
    )
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dash = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    api = next(d for d in provisioned["datasources"] if d["uid"] == "openkws-api")
    assert api["type"] == "yesoreyeram-infinity-datasource" and api["url"] == "http://openkws:8000"
    plugin = c["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert plugin.split()[0] == api["type"], "compose installs the plugin the datasource needs"
    assert uids == {ds["uid"], api["uid"]}, f"panels use datasources {uids}"


REQUIRED_PANELS = {
    "active streams": ["openkws_active_streams"],
    "audio seconds per second": ["openkws_audio_seconds_total"],
    "detection latency": ["openkws_detection_latency_seconds_bucket"],
    "inference batch size": ["openkws_inference_batch_size"],
    "inference batch latency": ["openkws_inference_batch_seconds_bucket"],
    "detections by source": ["openkws_detections_total"],
    "errors by type": ["openkws_errors_total"],
    "enrolled keywords": ["openkws_enrolled_keywords"],
    "cpu": ["process_cpu_seconds_total"],
    "memory": ["process_resident_memory_bytes"],
    "engine backlog": ["openkws_engine_backlog_seconds"],
    "engine utilisation": ["openkws_engine_utilisation"],
    "admission refusals": ["openkws_admission_refusals_total"],
}


def test_dashboard_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in panels:
        prom = [t for t in p.get("targets", []) if t["datasource"]["uid"] == "prometheus"]
        assert p.get("targets") and all(t.get("expr") for t in prom), p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
    for title, metrics in REQUIRED_PANELS.items():
        matching = [p for p in panels if title in p["title"].lower()]
        assert matching, f"no panel titled like {title!r}"
        exprs = " ".join(t["expr"] for p in matching for t in p["targets"])
        for m in metrics:
            assert m in exprs, f"panel {title!r} does not query {m}"
    latency = next(
        p for p in panels if "detection latency" in p["title"].lower() and p["type"] == "timeseries"
    )
    assert sorted(
        re.findall(r"histogram_quantile\((0\.\d+)", " ".join(t["expr"] for t in latency["targets"]))
    ) == ["0.5", "0.95", "0.99"]


def test_no_panel_has_a_series_per_keyword() -> None:
    """Keywords are named by text in a bounded table (the API's top 10), never as Prometheus series."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t.get("expr", "") for p in dash["panels"] for t in p.get("targets", []))
    assert "keyword_id" not in exprs and "keyword" not in re.sub(r"openkws_enrolled_keywords", "", exprs)
    (top,) = [p for p in dash["panels"] if "top keywords by text" in p["title"].lower()]
    (t,) = top["targets"]
    assert t["url"] == "/v1/detections/counts" and t["root_selector"] == "keywords"
    assert {"key": "limit", "value": "10"} in t["url_options"]["params"]
    assert [c["selector"] for c in t["columns"]] == ["text", "detections"]


def test_compose_publishes_on_loopback_by_default() -> None:
    for name, s in _compose()["services"].items():
        for port in s.get("ports", []):
            assert str(port).startswith("${PUBLISH_ADDR:-127.0.0.1}:"), (
                f"{name} publishes {port} beyond loopback"
            )


def _grafana_entrypoint(password: str | None) -> subprocess.CompletedProcess[str]:
    """Run the compose Grafana entrypoint script under sh, as compose would ($$ -> $), with /run.sh
    (Grafana's own entrypoint) replaced by an echo."""
    ep = _compose()["services"]["grafana"]["entrypoint"]
    assert ep[:2] == ["/bin/sh", "-c"]
    script = ep[2].replace("$$", "$").replace("exec /run.sh", "echo grafana-started")
    env = {"PATH": "/usr/bin:/bin"}
    if password is not None:
        env["GF_SECURITY_ADMIN_PASSWORD"] = password
    return subprocess.run(["sh", "-c", script, ep[3]], env=env, capture_output=True, text=True, timeout=30)


def test_grafana_refuses_to_start_without_an_admin_password() -> None:
    env = _compose()["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}", "no default password"
    for pw in (None, "", "admin"):
        r = _grafana_entrypoint(pw)
        assert r.returncode == 64 and "set GRAFANA_ADMIN_PASSWORD" in r.stderr, (pw, r)
    r = _grafana_entrypoint("a-password-you-chose")
    assert r.returncode == 0 and r.stdout.strip() == "grafana-started"


def test_replicas_profile_adds_postgres() -> None:
    s = _compose()["services"]
    assert s["postgres"]["profiles"] == ["replicas"] and "ports" not in s["postgres"], (
        "the database stays inside"
    )
    rep = s["openkws-replica"]
    assert rep["profiles"] == ["replicas"] and rep["build"]["args"]["OPENKWS_EXTRAS"] == "postgres"
    env = rep["environment"]
    assert "@postgres:5432/" in env["OPENKWS_DATABASE_URL"] and float(env["OPENKWS_SYNC_INTERVAL_S"]) > 0
    assert rep["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "openkws" in rep["networks"]["default"]["aliases"], "Prometheus scrapes the replicas too"
