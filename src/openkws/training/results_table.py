"""Render the RESULTS.md ablation rows from `openkws eval pairs` reports (pairs.json).

openkws eval results-table runs/eval   # prints markdown rows; missing reports say "not run"
"""

from __future__ import annotations

import json
from pathlib import Path

# (row, system, config, synthetic report, Asterisk report, system key in the report or None = the model)
ROWS = [
    ("B1", "TTS templates, speech embedding (mean+max, cosine), untrained", "`--baselines`",
     "baselines-synth", "asterisk", "tts_template_speech_embedding"),
    ("B2", "TTS templates, DTW on log-mel, untrained", "`--baselines`", "baselines-synth", "asterisk",
     "tts_template_dtw_logmel"),
    ("1", "triplet (multi-view)", "`triplet.yaml`", "triplet-synth", "triplet-asterisk", None),
    ("2", "Proxy-MS", "`proxy_ms.yaml`", "proxy_ms-synth", "proxy_ms-asterisk", None),
    ("3", "AsyP", "`asyp.yaml`", "asyp-synth", "asyp-asterisk", None),
    ("4", "AsyP + MAL", "`asyp_mal.yaml`", "asyp_mal-synth", "asyp_mal-asterisk", None),
    ("5", "full ADML (AsyP+AdaMS phoneme level, MAL both levels, SphereFace2)", "`adml.yaml`",
     "adml-synth", "adml-asterisk", None),
    ("6", "full ADML + RPL", "`adml_rpl.yaml`", "adml_rpl-synth", "adml_rpl-asterisk", None),
    ("7", "full ADML + ADD", "`adml_add.yaml`", "adml_add-synth", "adml_add-asterisk", None),
    ("8a", "speech-embedding front-end, row 3 recipe (= row 3)", "`asyp.yaml`", "asyp-synth", "asyp-asterisk", None),
    ("8b", "log-mel front-end, row 3 recipe", "`asyp_logmel.yaml`", "asyp_logmel-synth", "asyp_logmel-asterisk", None),
    ("S0", "full ADML, 12 epochs (first shipped candidate)", "`default.yaml`", "synth_test", "asterisk", "openkws:"),
    ("S1", "AsyP, 20 epochs (**shipped**)", "`asyp_long.yaml`", "asyp_long-synth", "asyp_long-asterisk", None),
    ("S1t", "shipped model, TTS acoustic proxies (`proxy: tts`)", "`--proxy tts`", "asyp_long-synth-tts",
     "asyp_long-asterisk-tts", None),
]  # fmt: skip


HEADER = (
    "| # | system | config | synth easy EER | AUC | AP | synth hard EER | AUC | AP "
    "| Asterisk easy EER | AUC | Asterisk hard EER | AUC |\n" + "| --- " * 13 + "|"
)


def _system(report: dict, key: str | None) -> dict | None:
    systems = report["systems"]
    if key is None or key.endswith(":"):
        return next((v for k, v in systems.items() if k.startswith(key or "openkws:")), None)
    return systems.get(key)


def _load(root: Path, name: str | None, key: str | None) -> dict | None:
    if name is None:
        return None
    path = root / name / "pairs.json"
    return _system(json.loads(path.read_text()), key) if path.is_file() else None


def render(root: Path) -> str:
    lines = []
    for row, system, cfg, synth, ast, key in ROWS:
        s, a = _load(root, synth, key), _load(root, ast, key)
        cells = [row, system, cfg]
        for part in ("easy", "hard"):
            if s is None:
                cells += ["not run", "", ""]
            else:
                cells += [f"{100 * s[part]['eer']:.1f}%", f"{s[part]['auc']:.3f}", f"{s[part]['ap']:.3f}"]
        cells += (
            ["not run", "", "", ""]
            if a is None
            else [
                f"{100 * a['easy']['eer']:.1f}%",
                f"{a['easy']['auc']:.3f}",
                f"{100 * a['hard']['eer']:.1f}%",
                f"{a['hard']['auc']:.3f}",
            ]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
