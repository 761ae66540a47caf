"""Issue 25 defects 6 and 7: keyword files mean what they say, with REST's field rules.

One test per probe input: the YAML bomb fails fast, YAML scalars keep their text (``on``, ``yes``,
``0x1F``), numbers must be numbers, CSV rows must be well formed, metadata must be JSON, and
duplicate texts are an error naming the rows. The REST side of each rule is checked against the same
input where REST takes it. No server: the loader runs on files in a temporary directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openkws.keywords.fields import MAX_PHONEMES, stored_text
from openkws.keywords.keyfile import MAX_FILE_BYTES, KeyfileError, KeywordSpec, dump_keywords, load_keywords
from openkws.server.app import create_app
from openkws.settings import Settings

# "Billion laughs": nine levels of nine aliases, 9^9 (387 million) strings once expanded. The probe's
# file was 429 bytes; this one is the same construction.
BOMB = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join([f'*{chr(96 + i)}'] * 9)}]\n" for i in range(1, 9))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB + "keywords: [*i]\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """REST on the packaged model, to check that it refuses what files refuse."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("rest"), device="cpu", inference_workers=1)
    with TestClient(create_app(settings)) as c:
        yield c


def _load(tmp_path: Path, name: str, content: str) -> list[KeywordSpec]:
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return load_keywords(p)


def _error(tmp_path: Path, name: str, content: str) -> str:
    with pytest.raises(KeyfileError) as e:
        _load(tmp_path, name, content)
    return str(e.value)


def test_yaml_bomb_fails_fast_without_expanding(tmp_path: Path) -> None:
    assert len(BOMB) < 500
    t0 = time.process_time()
    msg = _error(tmp_path, "bomb.yaml", BOMB)
    assert time.process_time() - t0 < 2.0  # CPU time: the bomb took 25 s and 2.5 GB before
    assert "aliases" in msg and "line 2" in msg, msg


def test_a_file_over_the_size_budget_is_refused_unread(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    with p.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no time spent writing it
    with pytest.raises(KeyfileError, match=f"at most {MAX_FILE_BYTES}"):
        load_keywords(p)


@pytest.mark.parametrize("word", ["on", "yes", "off", "no", "y"])
def test_yaml_on_and_yes_stay_words(tmp_path: Path, word: str) -> None:
    assert _load(tmp_path, "w.yaml", f"- text: {word}\n")[0].text == word


def test_yaml_hex_stays_the_string_rest_reads(tmp_path: Path) -> None:
    (spec,) = _load(tmp_path, "hex.yaml", "- text: 0x1F\n")
    assert spec.text == "0x1F" and stored_text(spec.text) == "zero x one f"  # as REST enrolls it


def test_yaml_underscore_number_is_refused_like_rest(tmp_path: Path, client: TestClient) -> None:
    msg = _error(tmp_path, "u.yaml", "- text: 1_000\n")
    assert "keyword 1" in msg and "'_'" in msg, msg
    r = client.post("/v1/keywords", json={"text": "1_000"})
    assert r.status_code == 422 and "'_'" in r.json()["error"]["message"]


def test_yaml_boolean_text_is_refused(tmp_path: Path) -> None:
    msg = _error(tmp_path, "b.yaml", "- text: true\n")
    assert "text is a boolean, not a string; quote it" in msg, msg


def test_yaml_boolean_threshold_is_refused_like_rest(tmp_path: Path, client: TestClient) -> None:
    msg = _error(tmp_path, "t.yaml", "- text: hey jarvis\n  threshold: true\n")
    assert "threshold true is a boolean, not a number" in msg, msg
    assert client.post("/v1/keywords", json={"text": "hey jarvis", "threshold": True}).status_code == 422


def test_yaml_quoted_threshold_is_refused_like_rest(tmp_path: Path) -> None:
    msg = _error(tmp_path, "q.yaml", '- text: hey jarvis\n  threshold: "0.5"\n')
    assert "threshold '0.5' is not a number" in msg, msg


def test_csv_hex_threshold_is_not_a_number(tmp_path: Path) -> None:
    msg = _error(tmp_path, "h.csv", "text,threshold\nhey jarvis,0x1F\n")
    assert "line 2" in msg and "not a number" in msg, msg


def test_csv_unterminated_quote_is_an_error(tmp_path: Path) -> None:
    msg = _error(tmp_path, "q.csv", 'text,threshold\n"unterminated,0.5\n')
    assert "unterminated quote" in msg, msg


def test_csv_extra_cells_are_an_error(tmp_path: Path) -> None:
    msg = _error(tmp_path, "x.csv", "text,threshold\nhey jarvis,0.5,kitchen\n")
    assert "line 2" in msg and "1 cell(s) more than the header's 2 columns" in msg, msg


def test_csv_nan_in_metadata_is_an_error(tmp_path: Path) -> None:
    msg = _error(tmp_path, "n.csv", 'text,metadata\nhey jarvis,"{""a"": NaN}"\n')
    assert "line 2" in msg and "NaN is not a JSON number" in msg, msg


def test_yaml_nan_in_metadata_is_an_error(tmp_path: Path) -> None:
    msg = _error(tmp_path, "n.yaml", "- text: hey jarvis\n  metadata: {a: .nan}\n")
    assert "metadata.a holds nan" in msg, msg


def test_duplicate_texts_after_normalisation_name_the_rows(tmp_path: Path) -> None:
    content = "text,threshold\nhello there,0.5\nHello There!,0.7\nhello   there,0.9\nstop,0.5\n"
    msg = _error(tmp_path, "d.csv", content)
    assert "lines 2, 3, 4" in msg and "'hello there'" in msg, msg


def test_yaml_duplicates_name_the_entries(tmp_path: Path) -> None:
    msg = _error(tmp_path, "d.yaml", "- hey jarvis\n- stop\n- Hey, Jarvis\n")
    assert "keywords 1, 3" in msg, msg


def test_long_phoneme_override_round_trips_as_a_list(tmp_path: Path) -> None:
    phonemes = " ".join(["AH", "B"] * 60)  # 120 symbols, 299 characters as one string
    assert len(phonemes) == 299
    spec = KeywordSpec("abracadabra", phonemes=phonemes)
    dump_keywords([spec], tmp_path / "p.yaml")
    (back,) = load_keywords(tmp_path / "p.yaml")
    assert back == spec and back.request()["phonemes"] == phonemes.split()


def test_phoneme_override_over_the_symbol_limit_is_refused(tmp_path: Path) -> None:
    too_many = " ".join(["AH"] * (MAX_PHONEMES + 1))
    msg = _error(tmp_path, "p.yaml", f"- text: hey jarvis\n  phonemes: {too_many}\n")
    assert f"at most {MAX_PHONEMES}" in msg, msg
