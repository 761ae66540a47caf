"""Inference threads per worker: the usable cores shared among the engine processes unless set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from openkws.settings import Settings, usable_cores


def test_one_worker_gets_every_core_and_a_worker_per_core_gets_one_thread() -> None:
    cores = usable_cores()
    assert Settings(workers=1, device="cpu").resolved_inference_workers() == cores
    assert Settings(workers=cores, device="cpu").resolved_inference_workers() == 1
    assert Settings(workers=0, device="cpu").resolved_inference_workers() == 1  # 0: a worker per core
    assert Settings(workers=4 * cores, device="cpu").resolved_inference_workers() == 1  # never 0 threads


def test_an_explicit_thread_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(workers=0, inference_workers=3, device="cpu").resolved_inference_workers() == 3
    monkeypatch.setenv("OPENKWS_INFERENCE_WORKERS", "2")
    assert Settings(workers=0, device="cpu").resolved_inference_workers() == 2


@pytest.mark.parametrize("bad", [0, -1, "two"])
def test_a_bad_thread_count_is_refused_with_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValidationError, match="inference_workers"):
        Settings(inference_workers=bad)
