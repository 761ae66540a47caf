"""What every section of the benchmark report shares (:mod:`bench.report`): the results of one run,
whether its numbers may be shown, and the lookups and formatting the sections use."""

from __future__ import annotations

from typing import Any

NOT_MEASURED = "not yet measured"
SYSTEM_NAMES = {
    "openkws": "openkws",
    "openkws-tts": "openkws (TTS proxies)",
    "openwakeword": "openWakeWord",
    "pocketsphinx": "pocketsphinx (KWS)",
    "efficientword": "EfficientWord-Net",
}
ORDER = ("openkws", "openkws-tts", "openwakeword", "pocketsphinx", "efficientword")


def publishable(run: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a run may be published in docs/BENCHMARKS.md, and if not, why."""
    why = []
    if not run:
        why.append("no run recorded")
    if run.get("quick"):
        why.append("a --quick run")
    if (run.get("data") or {}).get("source") != "data-layer":
        why.append("not on the data layer's evaluation sets")
    if (run.get("openkws_model") or {}).get("untrained", True):
        why.append("openkws model is an untrained stand-in")
    return not why, why


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def display_name(s: str) -> str:
    return SYSTEM_NAMES.get(s, s)


def in_order(d: dict[str, Any]) -> list[str]:
    """The systems of ``d`` in the report's order (known ones first, then the rest by name)."""
    return [s for s in ORDER if s in d] + sorted(s for s in d if s not in ORDER)


class View:
    """One run's results (:func:`bench.report.load_results`) as a page shows them: with ``show``
    false every figure reads :data:`NOT_MEASURED`; ``img`` is the folder of its plots ("" for none)."""

    def __init__(self, res: dict[str, Any], show: bool, img: str) -> None:
        self.res, self.show, self.img = res, show, img

    def v(self, text: str) -> str:
        return text if self.show else NOT_MEASURED

    def frr(self, system: str, set_name: str, target: str, mode: str = "frr") -> float | None:
        s = self.res["streaming"].get(system, {}).get("sets", {}).get(set_name)
        return None if not s else s["summary"][target][mode]

    def speed_row(self, system: str, n: int) -> dict[str, Any] | None:
        for row in self.res["speed"].get("systems", {}).get(system, []):
            if row.get("keywords") == n and "rtf" in row:
                return row
        return None
