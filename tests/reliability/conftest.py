"""Reliability and security test fixtures. The service tests' fixtures (untrained model, synthesized
speech, calibrated threshold, in-process app factories) are reused; the helpers here add API keys
and real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import (  # noqa: F401  (fixtures)
    calibrated_threshold,
    client,
    g2p,
    make_client,
    make_settings,
    model_dir,
    speech,
    synth,
)


@dataclass(frozen=True)
class Tenant:
    name: str
    admin: str  # tokens
    stream: str

    def h(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin if scope == 'admin' else self.stream}"}


def new_tenant(c: TestClient, name: str) -> Tenant:
    keys = c.app.state.openkws.api_keys  # type: ignore[attr-defined]
    return Tenant(name, keys.create(name, "admin").token, keys.create(name, "stream").token)


@pytest.fixture
def auth_client(make_client: Callable[..., TestClient]) -> TestClient:  # noqa: F811
    return make_client(auth=True)


@pytest.fixture
def tenants(auth_client: TestClient) -> tuple[Tenant, Tenant]:
    return new_tenant(auth_client, "acme"), new_tenant(auth_client, "globex")
