"""``openkws eval streams``: keyword clips placed in background under named conditions, at least an
hour of keyword-free negatives, every keyword enrolled at once, scored by the serving engine.

Modules: :mod:`.sources` (negative audio), :mod:`.conditions` (positives in background),
:mod:`.build` (cached streams), :mod:`.engine_adapter` (the one coupling to the engine),
:mod:`.scoring` (hits, false alarms, FRR at a budget), :mod:`.calibration_check` (bank vs measured),
:mod:`.report` (JSON, plots, the BENCHMARKS.md table), :mod:`.run` (orchestration).
"""
