"""`openkws keywords add|set|import|export` against a real server: thresholds change when asked,
and a keyword list survives export -> import into another server unchanged (YAML and CSV)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openkws.cli import app
from openkws.client import OpenKWSClient
from openkws.keywords.keyfile import KeywordSpec, dump_keywords, load_keywords
from tests.cli.conftest import start_server

FIELDS = ("text", "threshold", "proxy", "phonemes", "metadata")


def _listed(url: str) -> list[tuple[object, ...]]:
    with OpenKWSClient(url) as c:
        return [tuple(kw[f] for f in FIELDS) for kw in c.list_keywords()]


def test_reenroll_with_new_threshold_updates_it_and_set_changes_it(server: str) -> None:
    run = CliRunner()
    r = run.invoke(app, ["keywords", "add", "hey jarvis", "--threshold", "0.6", "--url", server])
    assert r.exit_code == 0 and "threshold=0.6" in r.output and "(enrolled)" in r.output, r.output
    r = run.invoke(app, ["keywords", "add", "hey jarvis", "--threshold", "0.7", "--url", server])
    assert r.exit_code == 0 and "threshold 0.6 -> 0.7" in r.output, r.output
    kid = int(r.output.split()[0])
    r = run.invoke(app, ["keywords", "set", str(kid), "--threshold", "0.55", "--url", server])
    assert r.exit_code == 0 and "threshold=0.55" in r.output, r.output
    assert _listed(server)[0][1] == 0.55
    r = run.invoke(app, ["keywords", "add", "xkcd", "--url", server])
    assert "pronunciation guessed for xkcd" in r.output, r.output


def test_import_export_round_trip(server: str, tmp_path: Path) -> None:
    specs = [
        KeywordSpec("hey jarvis", threshold=0.6, metadata={"room": "kitchen", "n": 1}),
        KeywordSpec("turn on the lights", proxy="both"),
        KeywordSpec("xkcd", threshold=0.7, phonemes="EH K S | K EY | S IY | D IY"),
    ]
    src = tmp_path / "in.yaml"
    dump_keywords(specs, src)
    run = CliRunner()
    r = run.invoke(app, ["keywords", "import", str(src), "--url", server])
    assert r.exit_code == 0, r.output
    first = _listed(server)
    assert [k[0] for k in first] == ["hey jarvis", "turn on the lights", "xkcd"]
    assert first[0][1] == 0.6 and first[0][4] == {"room": "kitchen", "n": 1} and first[1][2] == "both"
    assert first[2][3] == ["EH", "K", "S", "|", "K", "EY", "|", "S", "IY", "|", "D", "IY"]

    for name in ("out.yaml", "out.csv"):
        out = tmp_path / name
        r = run.invoke(app, ["keywords", "export", str(out), "--url", server])
        assert r.exit_code == 0 and out.exists(), r.output
        assert [(s.text, s.threshold, s.proxy, s.metadata) for s in load_keywords(out)] == [
            (k[0], k[1], k[2], k[4]) for k in first
        ]
        url2, srv2, t2 = start_server(tmp_path / f"second-{name}")
        try:
            r = run.invoke(app, ["keywords", "import", str(out), "--url", url2])
            assert r.exit_code == 0, r.output
            assert _listed(url2) == first, name
        finally:
            srv2.should_exit = True
            t2.join(timeout=30)

    # importing again with another threshold updates the existing keyword instead of ignoring it
    changed = tmp_path / "changed.csv"
    changed.write_text("text,threshold\nhey jarvis,0.8\n")
    r = run.invoke(app, ["keywords", "import", str(changed), "--url", server])
    assert r.exit_code == 0 and "threshold 0.6 -> 0.8" in r.output, r.output
    r = run.invoke(app, ["keywords", "list", "--json", "--url", server])
    assert json.loads(r.output)[0]["threshold"] == 0.8
