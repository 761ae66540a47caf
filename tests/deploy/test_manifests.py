"""The Kubernetes manifests (deploy/), rendered offline with ``kubectl kustomize`` and linted with
checkov, plus the facts the issue asks of them that a linter does not know (probes on openkws'
endpoints, the drain fitting in the grace period, the HPA metric, websocket timeouts).

Validation command (what this test runs):
    kubectl kustomize deploy/overlays/trial > trial.yaml
    checkov -f trial.yaml --framework kubernetes --quiet --compact --skip-download
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ("overlays/trial", "overlays/production", "monitoring")
# `make setup` installs checkov into its own venv: its pins (packaging, networkx...) would clash with ours.
CHECKOV_VENV = Path(os.environ.get("OPENKWS_CHECKOV_VENV", Path.home() / ".local/share/openkws/checkov-venv"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`make setup` installs it)")
    return path


def render(kustomization: str) -> list[dict[str, Any]]:
    r = subprocess.run(
        [_tool("kubectl"), "kustomize", str(DEPLOY / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def checkov() -> str:
    exe = shutil.which("checkov") or (
        str(CHECKOV_VENV / "bin" / "checkov") if (CHECKOV_VENV / "bin" / "checkov").is_file() else None
    )
    if exe is None:
        pytest.skip(f"checkov is not installed (`make setup` puts it in {CHECKOV_VENV})")
    return exe


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [checkov(), "-f", str(path), "--framework", "kubernetes", "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_passes_checkov(kustomization: str, tmp_path: Path) -> None:
    docs = render(kustomization)
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    r = lint(out)
    assert r.returncode == 0 and "Failed checks: 0" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


def test_checkov_catches_a_writable_root_filesystem(tmp_path: Path) -> None:
    docs = render("overlays/production")
    dep = by_kind(docs, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    out = tmp_path / "bad.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    r = lint(out)
    assert r.returncode != 0 and "CKV_K8S_22" in r.stdout, "the lint must be able to fail"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deployment_probes_drain_and_security() -> None:
    docs = render("overlays/production")
    dep = by_kind(docs, "Deployment", "openkws")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = _env(c)
    # SIGTERM: drain streams (<= shutdown timeout), then uvicorn's graceful shutdown (<= the same again).
    shutdown = float(env["OPENKWS_SHUTDOWN_TIMEOUT_S"])
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert "sleep" in " ".join(pre_stop)
    pre_stop_s = float(pre_stop[-1].split("sleep(")[1].rstrip(")"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + 2 * shutdown
    assert env["OPENKWS_DATABASE_URL"] == {"secretKeyRef": {"name": "openkws-database", "key": "url"}}
    assert float(env["OPENKWS_SYNC_INTERVAL_S"]) > 0, "replicas follow the registry's change feed"
    assert env["OPENKWS_HOST"] == "0.0.0.0"
    # a worker per CPU, one inference thread each: /metrics answers for the pod whichever worker it reaches
    assert env.get("OPENKWS_WORKERS", "0") == "0" and "OPENKWS_INFERENCE_WORKERS" not in env, env
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
        c["resources"]["limits"]
    )
    sc = c["securityContext"]
    assert (
        sc["readOnlyRootFilesystem"]
        and not sc["allowPrivilegeEscalation"]
        and sc["capabilities"]["drop"] == ["ALL"]
    )
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", env["OPENKWS_DATA_DIR"]} <= mounts, "the writable paths of a read-only root"
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    svc = by_kind(docs, "Service", "openkws")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service selects the pods"
    assert [k for k in docs if k["kind"] == "Secret"] == [], "production: the database Secret is yours"


def test_hpa_pdb_ingress() -> None:
    docs = render("overlays/production")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Pods"]["pods"]["metric"]["name"] == "openkws_active_streams"
    assert kinds["Resource"]["resource"]["name"] == "cpu", "CPU is the fallback"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "openkws"
    pdb = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    ing = by_kind(docs, "Ingress")
    a = ing["metadata"]["annotations"]
    assert int(a["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600, "an hour-long stream stays up"
    assert int(a["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert a["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    rules = (DEPLOY / "monitoring" / "prometheus-adapter-rules.yaml").read_text()
    assert "openkws_active_streams" in rules


def test_trial_has_postgres_and_the_database_secret() -> None:
    docs = render("overlays/trial")
    sts = by_kind(docs, "StatefulSet", "openkws-postgres")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    secret = by_kind(docs, "Secret", "openkws-database")
    import base64

    url = base64.b64decode(secret["data"]["url"]).decode()
    assert url.startswith("postgresql://") and "@openkws-postgres:5432/" in url
    assert by_kind(docs, "Service", "openkws-postgres")["spec"]["clusterIP"] == "None"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"openkws"}
