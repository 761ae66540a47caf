"""Stored tts/both keywords when the model directory's whitening is removed, swapped or narrowed to
other modes, when their proxies are of other graphs, and when no bank is left (issue 26).

Where the old proxy can still be scored on the bank (same acoustic graphs), each keyword keeps its
bank-expected false-alarm rate; where it cannot, its threshold falls back to the default sensitivity,
never the stale raw cosine (whitened thresholds near 0.17 would fire on most speech with a plain
proxy). Real copies of the packaged model, real espeak-ng/flite renditions, the engine's own streams.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.engine.calibration import BANK_FILE
from openkws.engine.model_spec import (
    ModelSpec,
    legacy_proxy_fingerprint,
    load_spec,
    proxy_graphs,
    sha256_file,
)
from openkws.engine.spotter import Spotter
from openkws.engine.whitening import (
    SHIPPED_MODES,
    WHITENING_FILE,
    bank_embeddings,
    fit_whitening,
    sha256_bytes_of,
)
from openkws.keywords.registry import EnrollItem, KeywordRegistry
from openkws.keywords.sensitivity import Sensitivity
from openkws.keywords.store import KeywordRecord, KeywordStore
from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text.tts import ProxyTTS
from tests.model_copy import PACKAGED_MODEL, copy_model

ITEMS = (
    EnrollItem("computer", proxy="tts"),
    EnrollItem("turn on the lights", proxy="both"),
    EnrollItem("open the door", proxy="tts", target_fa_per_hour=0.1),
    EnrollItem("play music"),
)
ACOUSTIC = ("computer", "turn on the lights", "open the door")
PLAIN_SCALE = 0.35  # whitened tts thresholds sit below it (~0.2), plain ones above (~0.75)
NO_TTS = ProxyTTS(espeak_binary="/nonexistent/espeak-ng")
UNRELATED = "the weather was warm and we walked slowly to the station"


@dataclass(frozen=True)
class Enrolled:
    """A keyword database written by the packaged model (whitened tts/both proxies)."""

    db: Path
    records: dict[str, KeywordRecord]
    rates: dict[str, float]  # bank-expected false alarms per hour at enrollment


@pytest.fixture(scope="module")
def whitened_db(tmp_path_factory: pytest.TempPathFactory) -> Enrolled:
    if ProxyTTS().missing():
        pytest.skip("espeak-ng/flite not installed (make setup installs them)")
    db = tmp_path_factory.mktemp("whitened") / "kw.db"
    reg = _registry(PACKAGED_MODEL, db)
    out = reg.enroll("default", list(ITEMS))
    reg.store.close()
    rates = {e.record.text: e.expected_fa_per_hour for e in out}
    assert all(r is not None for r in rates.values())
    return Enrolled(db, {e.record.text: e.record for e in out}, rates)  # type: ignore[arg-type]


def _registry(model: Path, db: Path, tts: ProxyTTS | None = None) -> KeywordRegistry:
    sp = Spotter.load(model, device="cpu")
    store = KeywordStore(f"sqlite:///{db}")
    return KeywordRegistry(store, sp, tts=tts, sensitivity=Sensitivity.load(model, sp), hit_rate=False)


def _copy_db(src: Enrolled, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src.db}{suffix}").exists():
            shutil.copy(f"{src.db}{suffix}", dst / f"kw.db{suffix}")
    return dst / "kw.db"


def _opened(model: Path, src: Enrolled, tmp: Path, tts: ProxyTTS | None = None) -> KeywordRegistry:
    """A restart on ``model`` with a copy of the whitened database (index rebuilt from the store)."""
    reg = _registry(model, _copy_db(src, tmp / "db"), tts)
    reg.reconcile()
    return reg


def _stored(reg: KeywordRegistry) -> dict[str, KeywordRecord]:
    return {r.text: r for r in reg.store.all()}


def _rate(reg: KeywordRegistry, r: KeywordRecord) -> float | None:
    entry = reg.spotter.index.tenant("default").by_id[r.id]
    assert entry.threshold == r.threshold, "the index holds the stored threshold"
    return reg.sensitivity.expected_fa_per_hour(entry.proxy, r.threshold, r.phonemes)


def _rehashed(model: Path) -> Path:
    """model.json gets the whitening file's new sha256 (a whitening re-made by hand)."""
    spec = ModelSpec.model_validate(json.loads((model / "model.json").read_text()))
    files = dict(spec.files)
    files["whitening"] = files["whitening"].model_copy(update={"sha256": sha256_file(model / WHITENING_FILE)})
    ModelSpec.model_validate({**spec.model_dump(), "files": files}).write(model)
    load_spec(model)  # the contract accepts it: same graphs, same bank
    return model


def _detected(sp: Spotter, audio: np.ndarray) -> set[int]:
    stream = sp.create_stream()
    stream.accept_waveform(audio)
    stream.input_finished()
    return {d.keyword_id for d in sp.decode(stream).detections}


def _best(sp: Spotter, keyword_id: int, audio: np.ndarray) -> float:
    """Best score of ``keyword_id`` over every detector window of ``audio``."""
    stream = sp.create_stream(keyword_subset=[keyword_id], trace=True)
    stream.accept_waveform(audio)
    stream.input_finished()
    sp.decode(stream)
    assert stream.trace
    return max(p.score for p in stream.trace if p.keyword_id == keyword_id)


def test_proxy_fingerprints_name_their_graphs(tmp_path: Path) -> None:
    spec = load_spec(PACKAGED_MODEL)
    sp = Spotter.load(PACKAGED_MODEL, device="cpu")
    graphs = sp.acoustic_fingerprint
    white = sp.proxy_fingerprint_for("tts")
    assert white == sp.proxy_fingerprint_for("both") == sp.proxy_fingerprint != graphs
    assert proxy_graphs(white) == graphs and proxy_graphs(graphs) == graphs and proxy_graphs(None) is None
    assert len(white) <= 64  # the store's proxy_model column
    legacy = legacy_proxy_fingerprint(spec)
    assert legacy is not None and proxy_graphs(legacy) != graphs  # unreadable: recognised only as current
    plain = Spotter.load(copy_model(tmp_path / "plain", whitening=False), device="cpu")
    assert plain.acoustic_fingerprint == graphs
    assert plain.proxy_fingerprint_for("tts") == plain.proxy_fingerprint_for("both") == graphs


def test_removed_whitening_moves_thresholds_to_the_plain_scale_and_still_detects(
    whitened_db: Enrolled, tmp_path: Path, caplog: pytest.LogCaptureFixture, say: Callable[..., np.ndarray]
) -> None:
    """A model directory of the same graphs without whitening.npz (bank kept): plain proxies, thresholds
    carried to the plain scale. The keyword still fires on its own TTS rendition and not on other TTS
    speech, on which the stale whitened threshold would fire."""
    plain = copy_model(tmp_path / "plain", whitening=False)
    with caplog.at_level(logging.WARNING, logger="openkws"):
        reg = _opened(plain, whitened_db, tmp_path)
    stored, old = _stored(reg), whitened_db.records
    for text in ACOUSTIC:
        r = stored[text]
        assert r.proxy_model == reg.spotter.acoustic_fingerprint  # a plain proxy of the same graphs
        assert r.threshold - old[text].threshold > 0.15  # to the plain scale (0.19 -> 0.76 for "computer")
        assert _rate(reg, r) == pytest.approx(whitened_db.rates[text], rel=0.1)
    assert stored["play music"].threshold == old["play music"].threshold  # text proxies: untouched
    assert "3 tts/both keywords got new proxies" in caplog.text and "'open the door'" in caplog.text
    kid = stored["computer"].id
    own = say("computer")  # espeak:en-us+m3, seed 0: the proxy's first rendition
    other = say(UNRELATED)
    assert kid in _detected(reg.spotter, own)
    assert not _detected(reg.spotter, other) & {stored[t].id for t in ACOUSTIC}
    assert _best(reg.spotter, kid, other) > old["computer"].threshold  # the stale threshold would fire


def test_swapped_whitening_carries_the_sensitivity(whitened_db: Enrolled, tmp_path: Path) -> None:
    """Re-whitened from the same bank with another shrinkage: new whitened proxies, same rates."""
    model = copy_model(tmp_path / "swapped")
    emb, fingerprint = bank_embeddings(model / BANK_FILE)
    w = fit_whitening(
        emb,
        0.3,
        bank_sha256=sha256_bytes_of(model / BANK_FILE),
        bank_fingerprint=fingerprint,
        modes=SHIPPED_MODES,
    )
    w.save(model / WHITENING_FILE)
    reg = _opened(_rehashed(model), whitened_db, tmp_path)
    stored, old = _stored(reg), whitened_db.records
    index = reg.spotter.index.tenant("default").by_id
    for text in ACOUSTIC:
        r = stored[text]
        assert r.proxy_model == reg.spotter.proxy_fingerprint != old[text].proxy_model
        assert proxy_graphs(r.proxy_model) == proxy_graphs(old[text].proxy_model)
        assert r.proxy is not None and old[text].proxy is not None
        assert float(r.proxy @ old[text].proxy) < 0.9999  # another direction
        np.testing.assert_allclose(index[r.id].proxy, r.proxy, atol=1e-6)
        assert r.threshold != old[text].threshold
        assert _rate(reg, r) == pytest.approx(whitened_db.rates[text], rel=0.1)
    assert stored["play music"].threshold == old["play music"].threshold
    c = stored["computer"]  # its threshold moved 0.19 -> 0.30: the stale one would fire far more often
    stale = reg.sensitivity.expected_fa_per_hour(index[c.id].proxy, old["computer"].threshold, c.phonemes)
    assert stale is not None and stale > 10 * whitened_db.rates["computer"]
    reg.store.close()
    again = _registry(model, tmp_path / "db" / "kw.db", NO_TTS)  # a second start: kept, nothing moves
    again.reconcile()
    assert {t: r.threshold for t, r in _stored(again).items()} == {t: r.threshold for t, r in stored.items()}


def test_whitening_of_another_bank_carries_the_rate_the_new_bank_measures(
    whitened_db: Enrolled, tmp_path: Path
) -> None:
    """Bank and whitening rebuilt from two thirds of the bank's segments (another background): each
    new threshold gives the new proxy the rate the new bank expects of the old proxy at its old one."""
    from openkws.training.export import write_whitening

    model = copy_model(tmp_path / "rebanked")
    with np.load(model / BANK_FILE) as z:
        bank = {k: z[k] for k in z.files}
    keep = bank["segment"] % 3 != 0
    for k in ("embeddings", "scales", "segment", "frame"):
        bank[k] = bank[k][keep]
    bank["hours"] = np.float64(float(bank["hours"]) * keep.mean())
    np.savez(model / BANK_FILE, **bank)
    reg = _opened(write_whitening(model), whitened_db, tmp_path)
    stored, old = _stored(reg), whitened_db.records
    for text in ACOUSTIC:
        r, o = stored[text], old[text]
        assert r.proxy_model == reg.spotter.proxy_fingerprint != o.proxy_model
        assert r.threshold != o.threshold and o.proxy is not None
        was = reg.sensitivity.expected_fa_per_hour(o.proxy, o.threshold, o.phonemes)
        assert was is not None and _rate(reg, r) == pytest.approx(was, rel=0.1)
    assert stored["play music"].threshold == old["play music"].threshold


def test_narrowed_modes_move_only_the_keywords_whose_proxy_changed(
    whitened_db: Enrolled, tmp_path: Path
) -> None:
    """`openkws export whiten --mode both`: tts keywords get plain proxies (thresholds carried to the
    plain scale); both keywords are re-made identical under the new file, their thresholds stay."""
    from openkws.training.export import write_whitening

    model = write_whitening(copy_model(tmp_path / "both_only"), ("both",))
    reg = _opened(model, whitened_db, tmp_path)
    stored, old = _stored(reg), whitened_db.records
    for text in ("computer", "open the door"):
        assert stored[text].proxy_model == reg.spotter.acoustic_fingerprint
        assert stored[text].threshold > PLAIN_SCALE
        assert _rate(reg, stored[text]) == pytest.approx(whitened_db.rates[text], rel=0.1)
    both = stored["turn on the lights"]
    assert both.proxy_model == reg.spotter.proxy_fingerprint_for("both") != old[both.text].proxy_model
    assert both.proxy is not None and old[both.text].proxy is not None
    np.testing.assert_allclose(both.proxy, old[both.text].proxy, atol=1e-6)
    assert both.threshold == old[both.text].threshold  # the same proxy: the same threshold


def test_no_bank_falls_back_to_the_default_threshold_with_a_warning(
    whitened_db: Enrolled, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bank and whitening both gone (`export whiten --mode none` on a bankless copy): the old proxies
    cannot be scored, so thresholds become the model's default, not the whitened raw cosines."""
    bankless = copy_model(tmp_path / "bankless", bank=False)
    with caplog.at_level(logging.WARNING, logger="openkws"):
        reg = _opened(bankless, whitened_db, tmp_path)
    stored, old = _stored(reg), whitened_db.records
    assert not reg.sensitivity.available
    for text in ACOUSTIC:
        assert stored[text].threshold == reg.spotter.default_threshold != old[text].threshold
        assert stored[text].proxy_model == reg.spotter.acoustic_fingerprint
    assert stored["play music"].threshold == old["play music"].threshold
    assert "3 tts/both keywords had proxies of other acoustic graphs, or no calibration bank" in caplog.text
    assert all(f"{stored[t].id} {t!r}" in caplog.text for t in ACOUSTIC)


def test_proxy_of_other_graphs_gets_the_default_sensitivity(
    whitened_db: Enrolled, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored proxy of unknown graphs (another model) cannot be scored: its stale raw threshold is
    replaced by the default sensitivity for the re-made proxy; keywords of these graphs are kept."""
    db = _copy_db(whitened_db, tmp_path / "db")
    store = KeywordStore(f"sqlite:///{db}")
    r = whitened_db.records["open the door"]
    assert r.proxy is not None
    store.set_proxy(r.id, r.proxy, "0" * 32)
    store.close()
    with caplog.at_level(logging.WARNING, logger="openkws"):
        reg = _registry(PACKAGED_MODEL, db)
        reg.reconcile()
    stored = _stored(reg)
    door = stored["open the door"]
    assert door.proxy_model == reg.spotter.proxy_fingerprint
    assert door.threshold < r.threshold  # the target was 0.1 FA/h; the default sensitivity is 0.5
    assert _rate(reg, door) == pytest.approx(reg.sensitivity.default_target, rel=0.1)
    for text in ("computer", "turn on the lights", "play music"):  # kept as stored
        assert stored[text].threshold == whitened_db.records[text].threshold
        assert stored[text].proxy_model == whitened_db.records[text].proxy_model
    assert "1 tts/both keywords had proxies of other acoustic graphs" in caplog.text
    assert f"{door.id} 'open the door'" in caplog.text


def test_tts_failure_keeps_a_proxy_of_these_graphs_and_resets_others(
    whitened_db: Enrolled, tmp_path: Path
) -> None:
    """TTS down at the restart: a stored whitened proxy of these graphs stays in use with its own
    threshold (plain copy); a proxy of other graphs falls back to the text proxy at the default
    sensitivity. The stored proxies are left alone, so the next start with TTS re-makes them."""
    db = _copy_db(whitened_db, tmp_path / "db")
    store = KeywordStore(f"sqlite:///{db}")
    door = whitened_db.records["open the door"]
    assert door.proxy is not None
    store.set_proxy(door.id, door.proxy, "0" * 32)
    store.close()
    reg = _registry(copy_model(tmp_path / "plain", whitening=False), db, NO_TTS)
    reg.reconcile()
    stored, index = _stored(reg), reg.spotter.index.tenant("default").by_id
    for text in ("computer", "turn on the lights"):
        r, old = stored[text], whitened_db.records[text]
        assert old.proxy is not None
        np.testing.assert_allclose(index[r.id].proxy, old.proxy, atol=1e-6)
        assert (r.threshold, r.proxy_model) == (old.threshold, old.proxy_model)
    d = stored["open the door"]
    text_proxy = reg.spotter.keyword_proxies([d.phonemes])[0]
    np.testing.assert_allclose(index[d.id].proxy, text_proxy, atol=1e-6)
    assert d.threshold == reg.sensitivity.threshold(text_proxy, None, d.phonemes) != door.threshold
    assert d.proxy_model == "0" * 32


def test_fingerprint_of_the_previous_format_is_kept_and_relabelled(
    whitened_db: Enrolled, tmp_path: Path
) -> None:
    """Keywords stored under the hashed fingerprint of the current whitening (before the graphs' part
    was readable) keep their proxies without synthesis (TTS down here) and get the readable label."""
    db = _copy_db(whitened_db, tmp_path / "db")
    store = KeywordStore(f"sqlite:///{db}")
    legacy = legacy_proxy_fingerprint(load_spec(PACKAGED_MODEL))
    assert legacy is not None
    for text in ACOUSTIC:
        r = whitened_db.records[text]
        assert r.proxy is not None
        store.set_proxy(r.id, r.proxy, legacy)
    store.close()
    reg = _registry(PACKAGED_MODEL, db, NO_TTS)
    reg.reconcile()
    stored, index = _stored(reg), reg.spotter.index.tenant("default").by_id
    for text in ACOUSTIC:
        r, old = stored[text], whitened_db.records[text]
        assert old.proxy is not None
        np.testing.assert_allclose(index[r.id].proxy, old.proxy, atol=1e-6)
        assert (r.threshold, r.proxy_model) == (old.threshold, reg.spotter.proxy_fingerprint)


def test_service_restart_on_a_model_without_whitening(tmp_path: Path) -> None:
    """The same through the service's start-up: a tts keyword enrolled over REST with the whitened
    model reports a plain-scale threshold with the same expected rate after a restart without it."""
    if ProxyTTS().missing():
        pytest.skip("espeak-ng/flite not installed (make setup installs them)")
    data = tmp_path / "data"
    white, plain = copy_model(tmp_path / "white"), copy_model(tmp_path / "plain", whitening=False)
    with TestClient(
        create_app(Settings(model_dir=white, data_dir=data, device="cpu", enroll_hit_rate=False))
    ) as c:
        r = c.post("/v1/keywords", json={"text": "computer", "proxy": "tts"})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        before = c.get(f"/v1/keywords/{kid}").json()
    with TestClient(create_app(Settings(model_dir=plain, data_dir=data, device="cpu"))) as c:
        after = c.get(f"/v1/keywords/{kid}").json()
    assert before["threshold"] < PLAIN_SCALE < after["threshold"]
    assert after["expected_fa_per_hour"] == pytest.approx(before["expected_fa_per_hour"], rel=0.1)
