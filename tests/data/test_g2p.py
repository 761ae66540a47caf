"""Shared G2P: never touches the network or imports g2p_en/nltk; bad input gets typed errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from openkws.text.g2p import G2P, MAX_CHARS, MAX_WORDS, G2PError

_BLOCK_NETWORK = """
import socket
class _NoSocket(socket.socket):  # a class, so that ssl can still subclass it at import
    def __init__(self, *a, **k):
        raise RuntimeError("socket creation attempted")
def _no_network(*a, **k):
    raise RuntimeError("network access attempted")
socket.socket = _NoSocket
socket.create_connection = _no_network
socket.getaddrinfo = _no_network
"""

_EXERCISE = """
from openkws.text.g2p import G2P
g2p = G2P()
assert g2p("Hey Jarvis").phonemes == ("HH", "EY", "|", "JH", "AA", "R", "V", "AH", "S")
assert g2p("the 7th floor at 42").words == ("the", "seventh", "floor", "at", "forty", "two")
assert g2p.word("zorblaxian")  # out of vocabulary: the neural model, run from local weights
assert g2p("don't STOP!").words == ("don't", "stop")
"""


@pytest.fixture(scope="module")
def g2p() -> G2P:
    return G2P()


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_offline_never_imports_g2p_en_or_nltk_and_survives_patched_download() -> None:
    # One interpreter, two phases (a subprocess start costs seconds of cmudict/inflect loading):
    # 1. the G2P may *locate* g2p_en's files (find_spec) but must not import g2p_en or nltk;
    # 2. with nltk imported and nltk.download patched to raise, a fresh G2P still works.
    code = (
        _BLOCK_NETWORK
        + "import sys\n"
        + _EXERCISE
        + """
assert "g2p_en" not in sys.modules and "nltk" not in sys.modules, "g2p_en/nltk imported"
try:
    import nltk
except ImportError:
    nltk = None
if nltk is not None:
    def _no_download(*a, **k):
        raise RuntimeError("nltk.download attempted")
    nltk.download = _no_download
"""
        + _EXERCISE
        + """
assert "g2p_en" not in sys.modules
print("OK")
"""
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("   \t", "empty"),
        ("?!...,;", "no_words"),
        ("\U0001f642\U0001f680", "no_words"),
        ("привет", "non_latin"),
        ("hello 世界", "non_latin"),
        ("a" * (MAX_CHARS + 1), "too_long"),
        (" ".join(["go"] * (MAX_WORDS + 1)), "too_many_words"),
        ("12 34 56 78", "too_many_words"),  # numbers expand to words before counting
    ],
)
def test_bad_input_has_a_typed_error(g2p: G2P, text: str, code: str) -> None:
    with pytest.raises(G2PError) as err:
        g2p(text)
    assert err.value.code == code
    assert err.value.message  # a sentence a person can act on


def test_cached_and_stable(g2p: G2P) -> None:
    assert g2p("hello world") == g2p("Hello, World!")
    assert g2p.word("hello") is g2p.word("hello")
