"""Issue 25 defect 7: export -> import round-trips at any size, all or nothing.

1,011 keywords (more than one batch request holds), one of them with a 120-phoneme override that
the export writes as a 299-character string, go from one server to a fresh one with
``openkws keywords export`` and ``import``; and an import that fails part-way (the tenant limit, in
its last batch) leaves the server as it was."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.words import SPOKEN_WORDS
from openkws.cli import app
from openkws.client import OpenKWSClient
from openkws.keywords.keyfile import load_keywords
from tests.cli.conftest import start_server
from tests.model_copy import copy_model

WORDS = list(SPOKEN_WORDS)
N = 1011
LONG = ["AH", "B"] * 60  # 120 phonemes; " ".join(LONG) is 299 characters


def _texts(n: int) -> list[str]:
    return [f"{a} {b}" for a, b in itertools.islice(itertools.permutations(WORDS, 2), n)]


def _listed(url: str) -> list[tuple[object, ...]]:
    with OpenKWSClient(url) as c:
        return [(k["text"], k["threshold"], k["phonemes"], k["metadata"]) for k in c.list_keywords()]


@pytest.fixture
def bankless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers on the packaged model without its calibration bank: 2 x 1,011 enrollments then skip
    the bank's per-keyword false-alarm estimate, which this test does not look at."""
    model = copy_model(tmp_path / "model", bank=False)  # and so without the whitening that needs the bank
    monkeypatch.setenv("OPENKWS_MODEL_DIR", str(model))


def test_export_import_of_1011_keywords_round_trips(bankless: None, tmp_path: Path) -> None:
    server, srv1, t1 = start_server(tmp_path / "first")
    try:
        _round_trip(server, tmp_path)
    finally:
        srv1.should_exit = True
        t1.join(timeout=30)


def _round_trip(server: str, tmp_path: Path) -> None:
    texts = _texts(N)
    with OpenKWSClient(server, timeout=900) as c:
        items = [
            {"text": t, "threshold": 0.5 + (i % 40) / 100, "metadata": {"i": i}} for i, t in enumerate(texts)
        ]
        items[7]["phonemes"] = LONG
        c.add_keyword_items(items[:1000])
        c.add_keyword_items(items[1000:])
    first = _listed(server)
    assert len(first) == N and first[7][2] == LONG
    run = CliRunner()
    out = tmp_path / "all.yaml"
    r = run.invoke(app, ["keywords", "export", str(out), "--url", server])
    assert r.exit_code == 0, r.output
    exported = {k.text: k.phonemes for k in load_keywords(out)}
    assert exported[first[7][0]] == " ".join(LONG) and len(" ".join(LONG)) == 299  # a string, as probed
    url2, srv2, t2 = start_server(tmp_path / "second")
    try:
        r = run.invoke(app, ["keywords", "import", str(out), "--url", url2])
        assert r.exit_code == 0, r.output[-2000:]
        assert _listed(url2) == first
    finally:
        srv2.should_exit = True
        t2.join(timeout=30)


def test_a_failed_import_is_undone(bankless: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKWS_MAX_KEYWORDS_PER_TENANT", "4")
    url, srv, t = start_server(tmp_path / "limited")
    try:
        with OpenKWSClient(url) as c:
            c.add_keyword("hey jarvis", threshold=0.6)
        before = _listed(url)
        f = tmp_path / "five.csv"
        f.write_text("text,threshold\nhey jarvis,0.8\n" + "".join(f"{t},0.5\n" for t in _texts(4)))
        r = CliRunner().invoke(app, ["keywords", "import", str(f), "--url", url, "--batch-size", "2"])
        assert r.exit_code == 1, r.output
        assert (
            "import failed at batch 3 of 3" in r.output and "at most 4 are accepted per tenant" in r.output
        ), r.output
        assert "deleted the 3 keyword(s) it enrolled" in r.output, r.output
        assert _listed(url) == before  # nothing of the import is left, the old threshold included
    finally:
        srv.should_exit = True
        t.join(timeout=30)
