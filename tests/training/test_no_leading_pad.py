"""`openkws eval streams --no-leading-pad` and `openkws eval pairs --no-leading-pad` (issue 23): the
keyword audio starts at its first sample, reported beside the padded figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openkws.settings import packaged_model_dir
from openkws.training.eval_streams.engine_adapter import decode_from_onsets
from tests.training.test_eval_streams import fixture_set  # noqa: F401  (fixture)


def test_streams_report_both_readings(fixture_set: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    from openkws.training.eval_streams.run import StreamsConfig, run_streams

    manifest, neg = fixture_set
    cfg = StreamsConfig(manifest=manifest, out=tmp_path / "out", cache=tmp_path / "cache", conditions=("quiet",),
                        negatives=(str(neg),), proxies=("text",), no_leading_pad=True)  # fmt: skip
    systems = run_streams(cfg)["systems"]  # type: ignore[index]
    padded, bare = systems["openkws-text"], systems["openkws-text[no leading pad]"]
    assert padded["positives"] == bare["positives"] == 3
    assert padded["negative_hours"] == bare["negative_hours"]  # the negatives are the padded run's
    assert (tmp_path / "cache" / "events").is_dir() and any(
        p.name.endswith("_nolead.jsonl") for p in (tmp_path / "cache" / "events").iterdir()
    )


def test_decode_from_onsets_reports_whole_stream_times() -> None:
    from openkws.engine.spotter import Spotter

    sp = Spotter.load(packaged_model_dir(), device="cpu")
    rows = [(1, "eval-streams", "stop", sp.pronounce("stop").phonemes, -1.0)]  # fires on every window
    sp.index.replace_all(sp.entries_from(rows))
    audio = np.zeros(16_000 * 6, np.float32)
    out = decode_from_onsets(sp, audio, [1.0, 3.5], ["text"])["text"]
    assert out and min(e.start_s for e in out) >= 1.0 and max(e.end_s for e in out) <= 6.0
    assert any(e.start_s >= 3.5 for e in out)  # the second cut's events are shifted by its onset


def test_pairs_leading_pad_changes_only_the_audio_ahead() -> None:
    from openkws.training.evaluate.engine_scoring import EngineScorer

    scorer = EngineScorer(packaged_model_dir())
    x = (0.1 * np.sin(np.arange(16_000) / 4)).astype(np.float32)
    (padded,) = scorer.window_embeddings_many([(16_000, x)], leading_pad=True)
    (bare,) = scorer.window_embeddings_many([(16_000, x)], leading_pad=False)
    assert len(padded) > len(bare) > 0  # half a second less audio: fewer windows
