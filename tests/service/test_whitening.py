"""Whitened TTS proxies (issue 26): the whitening maths, the model-directory contract, enrollment.

The maths runs on constructed backgrounds with a known covariance; the contract and enrollment run on
a real untrained export with a real (small) calibration bank built from synthesized audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from openkws.engine.acoustic_proxy import TEMPO_FACTORS, combine_proxies, tempo_variant
from openkws.engine.calibration import BANK_FILE
from openkws.engine.model_spec import ModelContractError, load_spec
from openkws.engine.spotter import Spotter
from openkws.engine.whitening import (
    SHRINKAGE,
    WHITENING_FILE,
    Whitening,
    WhiteningError,
    fit_whitening,
    load_whitening,
    whitening_from_bank,
)
from openkws.text.tts import ProxyTTS
from tests.model_copy import copy_model


def white_background(dim: int, a: float, mean: np.ndarray) -> np.ndarray:
    """Points mean ± a e_i: sample mean exactly ``mean``, sample covariance exactly c * I."""
    eye = np.eye(dim)
    return np.concatenate([mean + a * eye, mean - a * eye])


@pytest.mark.parametrize("dim", [2, 8, 64])
def test_white_background_whitening_is_identity_up_to_scale(dim: int) -> None:
    rng = np.random.default_rng(dim)
    mu = rng.standard_normal(dim)
    w = fit_whitening(white_background(dim, 3.0, mu))
    c = 2 * 9.0 / (2 * dim - 1)  # np.cov of the 2D points ± 3 e_i
    np.testing.assert_allclose(w.inverse * c, np.eye(dim), atol=1e-9)
    np.testing.assert_allclose(w.mean, mu, atol=1e-12)
    m = rng.standard_normal(dim)
    d = m - mu
    np.testing.assert_allclose(w.proxy(m), d / np.linalg.norm(d), atol=1e-6)  # only the mean is removed


def test_whitening_divides_by_the_shrunk_covariance() -> None:
    """Variance 4 on axis 0, 1 on axis 1: S = 0.9 diag(4, 1) + 0.1 * 2.5 I (closed form)."""
    x = np.concatenate([white_background(2, 1.0, np.zeros(2))] * 50)
    x[:, 0] *= 2.0
    w = fit_whitening(x)
    var = np.var(x, axis=0, ddof=1)
    s = (1 - SHRINKAGE) * var + SHRINKAGE * var.mean()
    expect = np.array([1 / s[0], 1 / s[1]])
    np.testing.assert_allclose(w.proxy(np.array([1.0, 1.0])), expect / np.linalg.norm(expect), atol=1e-6)
    assert w.proxy(np.array([1.0, 1.0]))[0] < w.proxy(np.array([1.0, 1.0]))[1]  # the loud axis counts less


def test_whitened_proxies_are_unit_vectors() -> None:
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
    w = fit_whitening(bank)
    p = w.direction(rng.standard_normal((10, 16)))
    np.testing.assert_allclose(np.linalg.norm(p, axis=-1), 1.0, atol=1e-6)
    assert p.dtype == np.float32


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((1, 4)), r"\[N > 1, D\]"),
        (np.zeros(4), r"\[N > 1, D\]"),
        (np.full((3, 2), np.nan), "NaN"),
        (np.ones((5, 3)), "do not vary"),
    ],
)
def test_bad_background_is_refused(x: np.ndarray, message: str) -> None:
    with pytest.raises(WhiteningError, match=message):
        fit_whitening(x)


def test_bad_inputs_to_a_whitening_are_refused() -> None:
    w = fit_whitening(white_background(3, 1.0, np.zeros(3)))
    with pytest.raises(WhiteningError, match="dim 2; this whitening has dim 3"):
        w.proxy(np.zeros(2))
    with pytest.raises(WhiteningError, match="equals the background mean"):
        w.proxy(np.zeros(3))
    with pytest.raises(WhiteningError, match="shrinkage must be in"):
        fit_whitening(white_background(3, 1.0, np.zeros(3)), shrinkage=0.0)
    with pytest.raises(WhiteningError, match="accepted: a subset of"):
        Whitening(np.zeros(3), np.eye(3), modes=("text",))
    with pytest.raises(WhiteningError, match="shapes disagree"):
        Whitening(np.zeros(3), np.eye(2))


def test_tempo_variants() -> None:
    x = np.sin(np.arange(16_000) / 20.0).astype(np.float32)
    assert [len(tempo_variant(x, f)) for f in TEMPO_FACTORS] == [17_778, 16_000, 14_545]
    np.testing.assert_array_equal(tempo_variant(x, 1.0), x)
    with pytest.raises(ValueError, match="tempo factor must be > 0"):
        tempo_variant(x, 0.0)


# -- model directory: export, contract, enrollment ------------------------------------------------


@pytest.fixture(scope="module")
def banked_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained export with a small real calibration bank (synthesized speech, noise, music)."""
    from openkws.training.calibration_bank import build_bank

    if ProxyTTS().missing():
        pytest.skip("espeak-ng/flite not installed: the bank and the renditions need them")
    out = copy_model(tmp_path_factory.mktemp("banked") / "model", model_dir)
    build_bank(out, 8.0, 2.0, 2.0)  # small: the contract, not the calibration, is under test
    return out


@pytest.fixture
def whitened_dir(banked_dir: Path, tmp_path: Path) -> Path:
    from openkws.training.export import write_whitening

    return write_whitening(copy_model(tmp_path / "model", banked_dir), ("tts", "both"))


def test_export_writes_whitening_under_the_contract(whitened_dir: Path) -> None:
    spec = load_spec(whitened_dir)
    assert spec.files["whitening"].path == WHITENING_FILE
    w = load_whitening(whitened_dir / WHITENING_FILE, whitened_dir / BANK_FILE, spec.embedding_dim)
    with np.load(whitened_dir / BANK_FILE) as z:
        assert w.bank_fingerprint == str(z["fingerprint"])
    assert w.modes == ("tts", "both") and w.mean.shape == (spec.embedding_dim,)


def test_whitened_enrollment_is_a_unit_vector_and_differs_from_plain(
    whitened_dir: Path, banked_dir: Path
) -> None:
    sp, plain_sp = Spotter.load(whitened_dir, device="cpu"), Spotter.load(banked_dir, device="cpu")
    waves = ProxyTTS().renditions("turn on the lights", voices=("espeak:en-us+m3", "flite:slt"))
    white, plain = sp.acoustic_proxy(waves, "tts"), plain_sp.acoustic_proxy(waves, "tts")
    assert abs(float(np.linalg.norm(white)) - 1.0) < 1e-5 and white.shape == (sp.spec.embedding_dim,)
    assert float(white @ plain) < 0.99  # whitening changed the direction
    expect = sp.whitening.proxy(sp.acoustic_proxies.mean_embedding(waves, TEMPO_FACTORS))  # type: ignore[union-attr]
    np.testing.assert_allclose(white, expect, atol=1e-6)
    text = sp.embed_phoneme_ids([sp.g2p.inventory.encode(list(sp.pronounce("turn on the lights").phonemes))])[
        0
    ]
    both = combine_proxies(text, sp.acoustic_proxy(waves, "both"), "both")
    assert abs(float(np.linalg.norm(both)) - 1.0) < 1e-5
    # a stored proxy follows the whitening; the bank's fingerprint does not
    assert sp.acoustic_fingerprint == plain_sp.acoustic_fingerprint
    assert sp.proxy_fingerprint != plain_sp.proxy_fingerprint


def test_whitening_only_for_the_modes_it_names(whitened_dir: Path, banked_dir: Path) -> None:
    from openkws.training.export import write_whitening

    write_whitening(whitened_dir, ("both",))
    sp, plain_sp = Spotter.load(whitened_dir, device="cpu"), Spotter.load(banked_dir, device="cpu")
    waves = ProxyTTS().renditions("play music", voices=("espeak:en-us+m3",))
    np.testing.assert_allclose(
        sp.acoustic_proxy(waves, "tts"), plain_sp.acoustic_proxy(waves, "tts"), atol=1e-6
    )
    write_whitening(whitened_dir, ())  # removed: model.json no longer names it
    assert "whitening" not in load_spec(whitened_dir).files and not (whitened_dir / WHITENING_FILE).exists()


def test_contract_refuses_whitening_of_another_bank(whitened_dir: Path) -> None:
    with np.load(whitened_dir / BANK_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["hours"] = np.float64(float(arrays["hours"]) * 2)  # another bank: same model, other content
    np.savez(whitened_dir / BANK_FILE, **arrays)
    with pytest.raises(ModelContractError, match="computed from another calibration bank"):
        load_spec(whitened_dir)
    with pytest.raises(ModelContractError, match="computed from another calibration bank"):
        Spotter.load(whitened_dir, device="cpu")


def test_contract_refuses_a_mismatched_bank_fingerprint(whitened_dir: Path) -> None:
    """A whitening whose recorded fingerprint is not its bank's (hash of the file right, model wrong)."""
    from openkws.engine.model_spec import ModelFile, ModelSpec, sha256_file

    w = whitening_from_bank(whitened_dir / BANK_FILE)
    Whitening(w.mean, w.inverse, w.bank_sha256, "0" * 32, w.shrinkage, w.modes).save(
        whitened_dir / WHITENING_FILE
    )
    spec = json.loads((whitened_dir / "model.json").read_text())
    spec["files"]["whitening"] = ModelFile(
        path=WHITENING_FILE, sha256=sha256_file(whitened_dir / WHITENING_FILE)
    ).model_dump()
    ModelSpec.model_validate(spec).write(whitened_dir)
    with pytest.raises(ModelContractError, match="computed for acoustic model 000000000000"):
        load_spec(whitened_dir)  # the model's graphs name its acoustic fingerprint, bank or no bank
    with pytest.raises(WhiteningError, match="computed for bank fingerprint 000000000000"):
        load_whitening(whitened_dir / WHITENING_FILE, whitened_dir / BANK_FILE, w.dim)  # against the bank


def test_contract_refuses_a_modified_whitening_file(whitened_dir: Path) -> None:
    w = load_whitening(
        whitened_dir / WHITENING_FILE,
        whitened_dir / BANK_FILE,
        load_spec(whitened_dir, verify_hashes=False).embedding_dim,
    )
    Whitening(w.mean + 1.0, w.inverse, w.bank_sha256, w.bank_fingerprint).save(whitened_dir / WHITENING_FILE)
    with pytest.raises(ModelContractError, match="sha256 mismatch"):
        load_spec(whitened_dir)


def test_contract_refuses_whitening_without_its_bank(whitened_dir: Path) -> None:
    """Whitened scores have no threshold scale without the bank (tests/lib/test_packaged_whitening.py)."""
    (whitened_dir / BANK_FILE).unlink()
    with pytest.raises(ModelContractError, match=f"needs {BANK_FILE}, which is missing.*--mode none"):
        load_spec(whitened_dir)


def test_export_whiten_command(banked_dir: Path, tmp_path: Path) -> None:
    from openkws.cli import app

    out = copy_model(tmp_path / "model", banked_dir)
    runner = CliRunner()
    no_out = runner.invoke(app, ["export", "--untrained", "logmel"])  # the export itself still needs --out
    assert no_out.exit_code != 0 and "--out is required" in no_out.output
    bad = runner.invoke(app, ["export", "whiten", "--model", str(out), "--mode", "text"])
    assert bad.exit_code != 0 and "choose from tts, both" in bad.output
    ok = runner.invoke(app, ["export", "whiten", "--model", str(out), "--mode", "tts"])
    assert ok.exit_code == 0, ok.output
    assert load_whitening(out / WHITENING_FILE, out / BANK_FILE, load_spec(out).embedding_dim).modes == (
        "tts",
    )
    (out / BANK_FILE).unlink()
    missing = runner.invoke(app, ["export", "whiten", "--model", str(out)])
    assert missing.exit_code != 0 and "build the bank first" in missing.output
