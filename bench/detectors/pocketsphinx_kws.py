"""pocketsphinx 5 keyword-spotting mode: text-enrolled keyphrases with a detection threshold.

Install: ``pip install pocketsphinx`` (the ``bench`` extra); the wheel carries the US English
acoustic model and CMU dictionary. Nothing is downloaded.

Words missing from its dictionary get a pronunciation from openkws' own offline G2P
(:class:`openkws.text.G2P`: stress-free ARPAbet, the phone set of pocketsphinx's model).

Threshold sweep in one pass
---------------------------
pocketsphinx's threshold does not steer its search: every keyphrase's HMMs are evaluated and pruned
the same way whatever the threshold, which only decides whether a frame where the keyphrase
out-scores the phone loop by ``threshold`` is *reported*. Detections of the same phrase merge when
they overlap. So the decoder is given one copy of every keyphrase per threshold of the grid, each
copy spelled with its own dictionary words (``alexa__3`` -> the same phones as ``alexa``). The copies
share senone scores and never merge with each other, and each reports exactly what a run at that
threshold alone would. The grid is in log10 per phone (the keyphrase threshold is
``10 ** (x * n_phones)``): pocketsphinx's own guidance is a threshold that scales with the phrase
length, from about 1e-5 for a short word to 1e-50 for a long phrase.

The detection list of one utterance is scanned on every new detection, so a stream is decoded in
utterances of :data:`BLOCK_S` seconds, each started :data:`LEAD_IN_S` seconds early (so a keyphrase
spanning a boundary is still seen whole) and keeping only detections that end inside its own block.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version

import numpy as np

from bench.detectors.base import Detector, SweepEvents

# log10 threshold per phone, permissive -> strict
DEFAULT_GRID = tuple(np.round(np.arange(-6.0, -0.49, 0.25), 2).tolist())
BLOCK_S = 20.0
LEAD_IN_S = 3.0
TAIL_S = 0.3  # decode a little past the block so the report delay does not hide its last detections
CHUNK_SAMPLES = 1280
FRAME_RATE = 100
KWS_MAX = 1500  # kws_search.c: offset subtracted from the margin in reported probabilities
SENSCR_SHIFT = 10  # pocketsphinx senone-score shift
NO_DETECTION = -100.0


class PocketsphinxDetector(Detector):
    name = "pocketsphinx"
    open_vocabulary = True
    install = "pip install pocketsphinx (US English model + CMU dict in the wheel)"

    def __init__(self, grid: tuple[float, ...] = DEFAULT_GRID, block_s: float = BLOCK_S) -> None:
        from pocketsphinx import Config, Decoder

        self.version = version("pocketsphinx")
        self.grid = np.asarray(grid, np.float64)
        self.block_s = block_s
        # no language model: keyword spotting never uses it (pocketsphinx's own keyphrase set-up drops it too)
        self.decoder = Decoder(Config(loglevel="ERROR", lm=None))
        self.delay_frames = int(self.decoder.config["kws_delay"])
        self._initial_cmn = self.decoder.get_cmn()
        self._g2p = None
        self._added: set[str] = set()
        self._phrases: dict[str, tuple[str, int]] = {}
        self.keywords: list[str] = []
        self.pron: dict[str, list[str]] = {}
        self._kws_path: str | None = None
        self._clip = None
        self._clip_kw: str | None = None
        self._clip_nph = 1

    # ----- dictionary -----
    def _word_phones(self, word: str) -> str:
        found = self.decoder.lookup_word(word)
        if found:
            return found
        if self._g2p is None:
            from openkws.text import G2P

            self._g2p = G2P()
        phones = " ".join(self._g2p.word(word))
        if not phones:
            raise ValueError(f"no pronunciation for {word!r}")
        return phones

    def _add_word(self, word: str, phones: str) -> None:
        if word in self._added:
            return
        try:
            self.decoder.add_word(word, phones, False)
        except RuntimeError:
            # pocketsphinx 5.x's binding sometimes reports failure for a word it did add; trust the dict
            if self.decoder.lookup_word(word) != phones:
                raise
        self._added.add(word)

    def pronounce(self, keyword: str) -> list[str]:
        """Keyword -> its words' phone strings (dictionary first, then openkws' G2P)."""
        from openkws.text.g2p import normalize

        return [self._word_phones(w) for w in normalize(keyword)]

    # ----- enrollment -----
    def enroll(self, keywords: list[str], templates: dict[str, list[np.ndarray]] | None = None) -> None:
        from openkws.text.g2p import normalize

        lines = []
        self._phrases = {}
        self.keywords = list(keywords)
        for kw in keywords:
            words = normalize(kw)
            phones = [self._word_phones(w) for w in words]
            self.pron[kw] = phones
            n_phones = sum(len(p.split()) for p in phones)
            for j, x in enumerate(self.grid):
                copy = []
                for w, p in zip(words, phones, strict=True):
                    name = f"{w}__{j}"
                    self._add_word(name, p)
                    copy.append(name)
                phrase = " ".join(copy)
                self._phrases[phrase] = (kw, j)
                lines.append(f"{phrase} /{10.0 ** min(x * n_phones, 300.0):.3e}/")  # float range
        fd, path = tempfile.mkstemp(prefix="openkws-bench-", suffix=".kws")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        if self._kws_path:
            os.unlink(self._kws_path)
        self._kws_path = path
        self.decoder.add_kws("bench", path)
        self.decoder.activate_search("bench")

    def n_phrases(self) -> int:
        return len(self._phrases)

    # ----- decoding -----
    def _decode(self, pcm: np.ndarray) -> list[tuple[str, int, float]]:
        """One utterance -> (phrase, copy index, end frame) for every detection."""
        d = self.decoder
        d.start_utt()
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            d.process_raw(pcm[i : i + CHUNK_SAMPLES].tobytes(), False, False)
        d.end_utt()
        out = []
        for seg in d.seg() or []:
            phrase = seg.word.strip()
            kw, j = self._phrases[phrase]
            out.append((kw, j, float(seg.end_frame)))
        return out

    def process(self, audio: np.ndarray) -> SweepEvents:
        if not self._phrases:
            raise RuntimeError("enroll keywords first")
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        self.decoder.set_cmn(self._initial_cmn)  # every stream starts from the same state
        sr = 16_000
        n = len(pcm)
        events: dict[str, list[list[float]]] = {k: [[] for _ in self.grid] for k in self.keywords}
        block = int(self.block_s * sr)
        for b0 in range(0, max(n, 1), block):
            start = max(0, b0 - int(LEAD_IN_S * sr))
            stop = min(n, b0 + block + int(TAIL_S * sr))
            for kw, j, ef in self._decode(pcm[start:stop]):
                t_end = start / sr + ef / FRAME_RATE
                if b0 / sr <= t_end < (b0 + block) / sr:
                    # reported once the decoder is kws_delay frames past the end
                    events[kw][j].append(t_end + self.delay_frames / FRAME_RATE)
        return SweepEvents(
            self.grid.copy(),
            {k: [np.sort(np.asarray(v, np.float64)) for v in per] for k, per in events.items()},
        )

    def score_clip(self, audio: np.ndarray, keyword: str) -> float:
        """Pairs protocol: the keyphrase's best margin over the phone loop in the clip, log10 per phone.

        A separate decoder with batch CMN (pocketsphinx's setting for whole recorded clips) and the
        keyphrase alone at a threshold low enough to report every frame where its last phone is
        alive; merged detections keep their best margin, so the maximum is the clip's score.
        Clips where the keyphrase never survives the beam score :data:`NO_DETECTION`.
        """
        from pocketsphinx import Config, Decoder

        if self._clip is None:
            self._clip = Decoder(Config(loglevel="ERROR", cmn="batch", lm=None))
            self._clip_kw = None
        d = self._clip
        if self._clip_kw != keyword:
            from openkws.text.g2p import normalize

            words = normalize(keyword)
            phones = [self._word_phones(w) for w in words]
            for w, p in zip(words, phones, strict=True):
                if d.lookup_word(w) != p:
                    try:
                        d.add_word(w, p, False)
                    except RuntimeError:
                        if d.lookup_word(w) != p:
                            raise
            self._clip_nph = sum(len(p.split()) for p in phones)
            fd, path = tempfile.mkstemp(prefix="openkws-bench-clip-", suffix=".kws")
            with os.fdopen(fd, "w") as f:
                f.write(" ".join(words) + " /1e-300/\n")
            d.add_kws("clip", path)
            d.activate_search("clip")
            os.unlink(path)
            self._clip_kw = keyword
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        pad = np.zeros(int(0.3 * 16_000), np.int16)
        d.start_utt()
        d.process_raw(np.concatenate([pad, pcm, pad]).tobytes(), False, True)
        d.end_utt()
        lm = d.get_logmath()
        best = [lm.log(seg.prob) for seg in d.seg() or [] if seg.prob > 0]
        if not best:
            return NO_DETECTION
        # seg.prob is the margin minus KWS_MAX in score units (log base 1.0001, shifted by 10 bits)
        margin = (max(best) + KWS_MAX) * (1 << SENSCR_SHIFT) * np.log10(1.0001)
        return float(margin / max(self._clip_nph, 1))

    def close(self) -> None:
        if self._kws_path and os.path.exists(self._kws_path):
            os.unlink(self._kws_path)
        self._kws_path = None
