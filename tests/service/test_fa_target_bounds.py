"""Issue 25 defect 5: a subnormal false-alarm target (``5e-324``) was a 500 (ZeroDivisionError in the
calibration tail) on POST, PATCH and batch enrollment. Now each route answers 422 with the accepted
range, and the calibration maths survive any positive finite target."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.engine.calibration import (
    MAX_TARGET_FA_PER_HOUR,
    MAX_THRESHOLD,
    MIN_TARGET_FA_PER_HOUR,
    CalibrationError,
    Peaks,
)
from tests.service.test_sensitivity import banked_model  # noqa: F401  (fixture)

TINY = 5e-324  # the probe's input: the smallest subnormal double
RANGE = f"accepted range [{MIN_TARGET_FA_PER_HOUR:g}, {MAX_TARGET_FA_PER_HOUR:g}]"


def _is_range_error(r: object) -> None:
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    err = r.json()["error"]  # type: ignore[attr-defined]
    assert err["code"] == "invalid_request" and "target_fa_per_hour" in err["message"]
    assert RANGE in err["message"] and "5e-324" in err["message"], err["message"]


def test_post_with_a_subnormal_target_is_a_422(client: TestClient) -> None:
    _is_range_error(client.post("/v1/keywords", json={"text": "hey jarvis", "target_fa_per_hour": TINY}))
    assert client.get("/v1/keywords").json()["total"] == 0


def test_batch_with_a_subnormal_target_is_a_422(client: TestClient) -> None:
    body = {"keywords": [{"text": "hey jarvis"}, {"text": "play music", "target_fa_per_hour": TINY}]}
    r = client.post("/v1/keywords/batch", json=body)
    _is_range_error(r)
    assert "keywords.1.target_fa_per_hour" in r.json()["error"]["message"]
    assert client.get("/v1/keywords").json()["total"] == 0  # all-or-nothing


def test_patch_with_a_subnormal_target_is_a_422(client: TestClient) -> None:
    kid = client.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
    _is_range_error(client.patch(f"/v1/keywords/{kid}", json={"target_fa_per_hour": TINY}))


@pytest.mark.parametrize("target", [TINY, 1e-300, MIN_TARGET_FA_PER_HOUR, 1e-3])
def test_tail_threshold_is_finite_and_capped_for_tiny_targets(target: float) -> None:
    t = Peaks(np.linspace(0.8, 0.4, 60), hours=0.05).threshold(target)
    assert math.isfinite(t) and 0.8 < t <= MAX_THRESHOLD


@pytest.mark.parametrize("target", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_or_non_finite_targets_raise_a_calibration_error(target: float) -> None:
    with pytest.raises(CalibrationError, match="finite"):
        Peaks(np.linspace(0.8, 0.4, 60), hours=1.0).threshold(target)


def test_the_smallest_accepted_target_enrolls_and_patches(
    banked_model: Path,  # noqa: F811
    make_client: Callable[..., TestClient],
) -> None:
    c = make_client(model_dir=banked_model)
    body = {"text": "turn on the lights", "target_fa_per_hour": MIN_TARGET_FA_PER_HOUR}
    r = c.post("/v1/keywords", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["threshold"] <= MAX_THRESHOLD
    b = c.post("/v1/keywords/batch", json={"keywords": [{**body, "text": "play music"}]})
    assert b.status_code == 200, b.text
    p = c.patch(f"/v1/keywords/{r.json()['id']}", json={"target_fa_per_hour": MIN_TARGET_FA_PER_HOUR})
    assert p.status_code == 200 and p.json()["threshold"] <= MAX_THRESHOLD
