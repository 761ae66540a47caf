"""Evaluation sets: Asterisk real-speech manifest from the installed files; keyword-free negatives; streams."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from openkws.training.data.asterisk import build_asterisk, read_transcripts, short_prompts
from openkws.training.data.audio import read_wav
from openkws.training.data.keywords import evaluation_keywords
from openkws.training.data.splits import is_test_word
from openkws.training.data.streams import build_keyword_streams, fortune_sentences, is_clean_sentence


def test_asterisk_short_prompts_cover_digits_letters_and_phrases() -> None:
    prompts = short_prompts()
    names = {p.name: text for p, text, _ in prompts}
    assert names["digits/7"] == "seven"
    assert names["phonetic/w_p"] == "whiskey"
    assert names["letters/dot"] == "dot"  # "dot [.]": the bracketed symbol is not spoken
    assert "silence/1" not in names and "beep" not in names  # non-speech prompts are dropped
    assert all(1 <= len(t.split()) <= 4 for t in names.values())
    assert len(prompts) >= 300 and len(set(names.values())) >= 280
    assert len(read_transcripts()) > len(prompts)  # long prompts are left out


def test_asterisk_manifest_on_real_files(tmp_path: Path) -> None:
    rows = build_asterisk(tmp_path, limit=12)
    assert len(rows) == 12
    with (tmp_path / "manifest.csv").open() as f:
        listed = list(csv.DictReader(f))
    assert [r["path"] for r in listed] == [r["path"] for r in rows]
    assert set(listed[0]) >= {"path", "text"}
    for r in listed:
        wave = read_wav(tmp_path / r["path"])
        assert abs(len(wave) / 16_000 - float(r["duration"])) < 1e-3
        assert 0.1 < float(r["duration"]) < 6.0
        assert np.abs(wave).max() > 0.05  # real speech, not silence or decoder garbage
        assert r["phonemes"]


def test_negative_text_has_no_keyword_or_test_word() -> None:
    sentences = fortune_sentences()
    assert len(sentences) > 2000  # far more than one hour of speech
    keywords = [tuple(k.split()) for k in evaluation_keywords()]
    for s in sentences[::7]:
        words = s.split()
        assert not any(is_test_word(w) for w in words), s
        assert not any(" ".join(k) in f" {s} " for k in keywords if len(k) > 1), s
    assert not is_clean_sentence(["please", "say", "hey", "jarvis", "now"])
    assert not is_clean_sentence(["what", "is", "the", "weather", "like"])


def test_keyword_stream_ground_truth(tmp_path: Path) -> None:
    truth = build_keyword_streams(
        tmp_path,
        minutes=0.3,
        streams_per_condition=1,
        snrs=(10.0,),
        backgrounds=("noise",),
        keywords=["hey jarvis", "computer"],
        gap_s=(1.0, 2.0),
        workers=1,
        progress=False,
        voices=["espeak:en-us+f3", "espeak:en-gb+whisper"],
    )
    assert len(truth) >= 4
    wave = read_wav(tmp_path / "stream_00.wav")
    assert len(wave) == int(0.3 * 60 * 16_000)
    spans = [(float(t["start"]), float(t["end"])) for t in truth]
    assert all(0 < s < e <= len(wave) / 16_000 for s, e in spans)
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))  # no overlaps
    # a keyword span is louder than the background around it (10 dB SNR)
    s, e = (int(x * 16_000) for x in spans[0])
    inside = np.mean(wave[s:e] ** 2)
    outside = np.mean(wave[max(0, s - 8000) : s] ** 2)
    assert 10 * np.log10(inside / outside) > 6.0
    with (tmp_path / "ground_truth.csv").open() as f:
        assert list(csv.DictReader(f))[0].keys() >= {"stream", "keyword", "start", "end"}


@pytest.mark.parametrize("keyword", ["alexa", "okay nabu", "lighthouse", "play the next episode"])
def test_keywords_are_never_in_negatives(keyword: str) -> None:
    assert keyword in evaluation_keywords()
    assert not is_clean_sentence(f"and then {keyword} said the man".split())
