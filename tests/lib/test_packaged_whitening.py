"""The packaged model ships whitened tts/both proxies (issue 26): its whitening fits its graphs and its
bank, calibration scores the proxy the engine stores, and copies of the model directory that lack
the bank or carry a bad whitening.npz are refused with a message that says what to do."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.engine.acoustic_proxy import TEMPO_FACTORS
from openkws.engine.calibration import BANK_FILE
from openkws.engine.model_spec import (
    ModelContractError,
    ModelSpec,
    acoustic_fingerprint,
    load_spec,
    sha256_file,
)
from openkws.engine.spotter import Spotter
from openkws.engine.whitening import SHIPPED_MODES, WHITENING_FILE, check_whitening, read_whitening
from openkws.server.app import create_app
from openkws.settings import Settings
from tests.model_copy import PACKAGED_MODEL, copy_model

MAX_MODEL_BYTES = 25 * 2**20  # STYLE.md: the shipped default model stays small


def test_packaged_model_ships_the_whitening_of_its_own_bank() -> None:
    spec = load_spec(PACKAGED_MODEL)
    assert spec.files["whitening"].path == WHITENING_FILE
    w = read_whitening(PACKAGED_MODEL / WHITENING_FILE, spec.embedding_dim)
    assert check_whitening(
        w, PACKAGED_MODEL / WHITENING_FILE, PACKAGED_MODEL / BANK_FILE, acoustic_fingerprint(spec)
    )
    assert w.modes == SHIPPED_MODES
    assert sum(f.stat().st_size for f in PACKAGED_MODEL.iterdir() if f.is_file()) <= MAX_MODEL_BYTES


def test_copy_without_the_bank_is_refused_with_both_fixes(tmp_path: Path) -> None:
    """A user copies the model directory but not calibration_bank.npz: a clear start-up error, not a
    service whose whitened keywords sit at default_threshold and never fire."""
    bad = copy_model(tmp_path / "model")
    (bad / BANK_FILE).unlink()
    for load in (lambda: load_spec(bad), lambda: Spotter.load(bad, device="cpu")):
        with pytest.raises(ModelContractError) as e:
            load()
        msg = str(e.value)
        assert f"needs {BANK_FILE}, which is missing" in msg
        assert "openkws eval bank --model" in msg and "--mode none" in msg
    settings = Settings(model_dir=bad, data_dir=tmp_path / "data", device="cpu")
    with pytest.raises(ModelContractError, match=f"needs {BANK_FILE}"), TestClient(create_app(settings)):
        pass


def test_bankless_copy_drops_the_whitening_and_serves_plain_proxies(tmp_path: Path) -> None:
    """What the error's second fix gives (`copy_model(bank=False)` does what `export whiten --mode none` does)."""
    d = copy_model(tmp_path / "model", bank=False)
    assert "whitening" not in load_spec(d).files and not (d / WHITENING_FILE).exists()
    sp = Spotter.load(d, device="cpu")
    assert sp.whitening is None and sp.proxy_fingerprint == sp.acoustic_fingerprint


def test_whitened_enrollment_is_calibrated_on_the_proxy_it_stores(tmp_path: Path) -> None:
    """The bank scores the whitened proxy the index holds, so `sensitivity` keeps its meaning, and the
    whitened scale is far below default_threshold (why a whitening without its bank is refused)."""
    from openkws.keywords.registry import EnrollItem, KeywordRegistry
    from openkws.keywords.sensitivity import Sensitivity
    from openkws.keywords.store import KeywordStore
    from openkws.text.tts import ProxyTTS

    if ProxyTTS().missing():
        pytest.skip("espeak-ng/flite not installed (make setup installs them)")
    sp = Spotter.load(PACKAGED_MODEL, device="cpu")
    sens = Sensitivity.load(PACKAGED_MODEL, sp)
    reg = KeywordRegistry(KeywordStore(f"sqlite:///{tmp_path}/kw.db"), sp, sensitivity=sens, hit_rate=False)
    (e,) = reg.enroll("default", [EnrollItem("computer", proxy="tts")])
    stored = sp.index.tenant("default").by_id[e.record.id].proxy
    assert sp.whitening is not None
    mean = sp.acoustic_proxies.mean_embedding(ProxyTTS().renditions("computer"), TEMPO_FACTORS)
    np.testing.assert_allclose(stored, sp.whitening.proxy(mean), atol=1e-5)
    assert e.record.threshold == sens.threshold(stored, None, e.record.phonemes)
    assert e.expected_fa_per_hour == pytest.approx(sens.default_target, rel=0.05)
    assert e.record.threshold < sp.default_threshold - 0.2


def test_stored_plain_tts_keywords_keep_their_sensitivity_after_the_upgrade(tmp_path: Path) -> None:
    """A database enrolled with the previous packaged model (plain tts proxies, thresholds around 0.75)
    opened with this one: the proxies are whitened and each threshold moves to keep the false-alarm
    rate the bank expected, instead of a raw threshold that whitened scores never reach."""
    from openkws.keywords.registry import EnrollItem, KeywordRegistry
    from openkws.keywords.sensitivity import Sensitivity
    from openkws.keywords.store import KeywordStore
    from openkws.text.tts import ProxyTTS

    if ProxyTTS().missing():
        pytest.skip("espeak-ng/flite not installed (make setup installs them)")
    url = f"sqlite:///{tmp_path}/kw.db"

    def registry(model: Path) -> KeywordRegistry:
        sp = Spotter.load(model, device="cpu")
        return KeywordRegistry(KeywordStore(url), sp, sensitivity=Sensitivity.load(model, sp), hit_rate=False)

    before = registry(copy_model(tmp_path / "previous", whitening=False))
    items = [
        EnrollItem("computer", proxy="tts"),
        EnrollItem("stop", 0.9, proxy="tts"),
        EnrollItem("play music"),
    ]
    old = {e.record.text: e for e in before.enroll("default", items)}
    assert old["computer"].record.threshold > 0.6 and old["computer"].expected_fa_per_hour is not None
    after = registry(PACKAGED_MODEL)
    after.reconcile()
    stored = {r.text: r for r in after.store.all()}
    index = after.spotter.index.tenant("default").by_id
    for text in ("computer", "stop"):
        r = stored[text]
        assert r.proxy_model == after.spotter.proxy_fingerprint != before.spotter.proxy_fingerprint
        assert r.threshold < old[text].record.threshold and index[r.id].threshold == r.threshold
    assert stored["computer"].threshold < 0.5  # whitened scale (the raw 0.9 of "stop" maps to a tail rate)
    rate = after.sensitivity.expected_fa_per_hour(
        index[stored["computer"].id].proxy, stored["computer"].threshold
    )
    assert rate == pytest.approx(old["computer"].expected_fa_per_hour, rel=0.1)
    assert stored["play music"].threshold == old["play music"].record.threshold  # text proxies: unchanged
    after.reconcile()  # a second start: nothing left to move
    assert {r.text: r.threshold for r in after.store.all()} == {t: r.threshold for t, r in stored.items()}


def _rehashed(model: Path) -> None:
    """model.json gets the whitening file's new sha256, so the checks behind the hash are reached."""
    spec = ModelSpec.model_validate(json.loads((model / "model.json").read_text()))
    files = dict(spec.files)
    files["whitening"] = files["whitening"].model_copy(update={"sha256": sha256_file(model / WHITENING_FILE)})
    ModelSpec.model_validate({**spec.model_dump(), "files": files}).write(model)


def _arrays(model: Path) -> dict[str, Any]:
    with np.load(model / WHITENING_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda a: {k: v for k, v in a.items() if k != key}


def _set(key: str, value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda a: {**a, key: value(a[key])}


def _nan(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[3] = np.nan
    return y


BAD_ARRAYS = {
    "missing key": (_without("inverse"), r"lacks inverse \(a whitening holds mean, inverse,.*openkws export whiten"),
    "other dimension": (
        lambda a: {**a, "mean": a["mean"][:8], "inverse": a["inverse"][:8, :8]},
        "has dim 8; the model's embeddings have dim 256",
    ),
    "shapes disagree": (_set("inverse", lambda x: x[:8, :8]), "shapes disagree"),
    "NaN": (_set("mean", _nan), "NaN or inf"),
    "not an inverse covariance": (_set("inverse", lambda x: -x), "not symmetric positive definite"),
    "unknown mode": (_set("modes", lambda _: np.array('["text"]')), r"accepted: a subset of \['tts', 'both'\]"),
    "modes not a list": (_set("modes", lambda _: np.array('"tts"')), "not a JSON list of names"),
    "modes not JSON": (_set("modes", lambda _: np.array("tts,both")), "not a JSON list of names"),
    "pickled object": (_set("mean", lambda x: np.array([object()] * len(x))), "not a readable .npz"),
    "another acoustic model": (_set("bank_fingerprint", lambda _: np.array("0" * 32)), "acoustic model 000000000000"),
    "another bank": (_set("bank_sha256", lambda _: np.array("0" * 64)), "another calibration bank"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_whitening_arrays_are_refused_saying_what_is_wrong(case: str, tmp_path: Path) -> None:
    change, message = BAD_ARRAYS[case]
    model = copy_model(tmp_path / "model")
    arrays = change(_arrays(model))
    np.savez(model / WHITENING_FILE, **arrays)  # pickles an object array: the loader must not unpickle it
    _rehashed(model)
    with pytest.raises(ModelContractError, match="whitening does not fit this model directory") as e:
        load_spec(model)
    assert e.match(message)


@pytest.mark.parametrize(
    ("case", "content"),
    [("empty", b""), ("not a zip", b"whitening\n" * 10), ("truncated", None)],
)
def test_corrupt_whitening_file_is_refused(case: str, content: bytes | None, tmp_path: Path) -> None:
    model = copy_model(tmp_path / "model")
    f = model / WHITENING_FILE
    f.write_bytes(f.read_bytes()[:1000] if content is None else content)
    with pytest.raises(ModelContractError, match="sha256 mismatch"):  # as shipped: the hash catches it
        load_spec(model)
    _rehashed(model)  # a hand-edited model.json: the file itself is still refused
    with pytest.raises(ModelContractError, match=r"is not a readable \.npz of plain arrays.*export whiten"):
        load_spec(model)


def test_whitening_named_but_absent_is_refused(tmp_path: Path) -> None:
    model = copy_model(tmp_path / "model")
    (model / WHITENING_FILE).unlink()
    with pytest.raises(ModelContractError, match="names whitening file 'whitening.npz', which is not a file"):
        load_spec(model)
