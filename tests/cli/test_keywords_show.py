"""`openkws keywords add` prints the expected hit rate and its warning beside the false alarms per hour."""

from __future__ import annotations

import pytest

from openkws.cli.keywords import _show


def test_add_output_shows_expected_rates_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    kw = {"id": 3, "text": "computer", "phonemes": ["K", "AH", "M"], "threshold": 0.813, "proxy": "text",
          "expected_fa_per_hour": 0.5, "expected_hit_rate": 0.125,
          "warnings": ["expected hit rate 12% at threshold 0.813: a TTS estimate ..."]}  # fmt: skip
    _show(kw, "enrolled")
    out = capsys.readouterr().out
    assert "expected 0.5 false alarms/h" in out and "expected hit rate 12% (TTS estimate)" in out
    assert "warning: expected hit rate 12%" in out
    _show({**kw, "expected_hit_rate": None, "warnings": []}, "enrolled")  # not estimated: not printed
    assert "hit rate" not in capsys.readouterr().out
