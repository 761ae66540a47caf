"""openkws benchmark suite: peers side by side on the same audio (``python -m bench.run_all``).

Modules:

* :mod:`bench.detectors` -- one adapter per system behind a common :class:`~bench.detectors.base.Detector`;
* :mod:`bench.streaming` -- the wake-word protocol: hit / false-alarm matching, threshold sweep, DET;
* :mod:`bench.datasets` -- evaluation streams and keyword lists (the data layer's, or a small smoke set);
* :mod:`bench.pairs` -- the LibriPhrase-style pairs protocol;
* :mod:`bench.speed` -- real-time factor, peak RSS, cost against the number of keywords;
* :mod:`bench.report` -- JSON -> tables and plots in ``docs/BENCHMARKS.md``.
"""
