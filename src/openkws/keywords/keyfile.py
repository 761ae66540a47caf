"""Keyword lists as files (``openkws keywords import|export``): YAML or CSV, chosen by suffix.

Each keyword has ``text`` and optionally ``threshold`` (cosine) or ``sensitivity`` (the target
false alarms per hour; the server sets the threshold from its calibration bank), ``proxy`` (text | tts | both), ``phonemes`` (ARPAbet, ``|`` between words) and
``metadata`` (a JSON object; a JSON string in CSV). YAML is a list, or a mapping with ``keywords:``.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> items = [KeywordSpec("hey jarvis", threshold=0.6, metadata={"room": "kitchen"}),
    ...          KeywordSpec("xkcd", proxy="tts", phonemes="EH K S | K EY | S IY | D IY")]
    >>> dump_keywords(items, d / "kw.csv"); load_keywords(d / "kw.csv") == items
    True
    >>> print((d / "kw.csv").read_text().splitlines()[1])
    hey jarvis,0.6,,text,,"{""room"": ""kitchen""}"
    >>> dump_keywords(items, d / "kw.yaml"); load_keywords(d / "kw.yaml") == items
    True
    >>> _ = (d / "bad.yaml").write_text("- text: hi\\n  treshold: 0.5\\n")
    >>> try:
    ...     load_keywords(d / "bad.yaml")
    ... except KeyfileError as e:
    ...     print(str(e).partition("bad.yaml, ")[2])
    keyword 1: unknown field 'treshold'; fields: text, threshold, sensitivity, proxy, phonemes, metadata
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from openkws.engine.acoustic_proxy import PROXY_MODES

FIELDS = ("text", "threshold", "sensitivity", "proxy", "phonemes", "metadata")
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}


class KeyfileError(ValueError):
    """A keyword file that cannot be read or written; the message names the file and the entry."""


@dataclass(frozen=True)
class KeywordSpec:
    text: str
    threshold: float | None = None
    sensitivity: float | None = None
    proxy: str = "text"
    phonemes: str | None = None  # space-separated, '|' between words
    metadata: dict[str, Any] | None = None

    def request(self) -> dict[str, Any]:
        """The ``POST /v1/keywords`` body."""
        body: dict[str, Any] = {"text": self.text, "proxy": self.proxy}
        for k, field in (
            ("threshold", "threshold"),
            ("sensitivity", "target_fa_per_hour"),
            ("phonemes", "phonemes"),
            ("metadata", "metadata"),
        ):
            v = getattr(self, k)
            if v is not None:
                body[field] = v
        return body

    @classmethod
    def from_api(cls, kw: dict[str, Any]) -> KeywordSpec:
        """An enrolled keyword as the server lists it (phonemes kept, so a re-import is exact)."""
        return cls(
            str(kw["text"]),
            threshold=float(kw["threshold"]),
            proxy=str(kw.get("proxy", "text")),
            phonemes=" ".join(kw["phonemes"]) if kw.get("phonemes") else None,
            metadata=kw.get("metadata"),
        )


def _format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise KeyfileError(f"{path}: unknown file type {path.suffix!r}; use .yaml, .yml or .csv")
    return fmt


# threshold: a cosine; sensitivity: expected false alarms per hour (as the API's target_fa_per_hour).
RANGES = {
    "threshold": (0.0, 1.0, "a value in [0, 1]"),
    "sensitivity": (1e-6, 3600.0, "false alarms per hour in (0, 3600]"),
}


def _number(where: str, name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise KeyfileError(f"{where}: {name} {value!r} is not a number") from None
    lo, hi, what = RANGES[name]
    if not lo <= x <= hi:
        raise KeyfileError(f"{where}: {name} {x:g} is out of range; use {what}")
    return x


def _spec(where: str, raw: Any) -> KeywordSpec:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise KeyfileError(f"{where}: expected a mapping with 'text', got {type(raw).__name__}")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise KeyfileError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}")
    text = str(raw.get("text") or "").strip()
    if not text:
        raise KeyfileError(f"{where}: 'text' is missing or empty")
    threshold = _number(where, "threshold", raw.get("threshold"))
    sensitivity = _number(where, "sensitivity", raw.get("sensitivity"))
    if threshold is not None and sensitivity is not None:
        raise KeyfileError(f"{where}: give threshold or sensitivity, not both")
    proxy = str(raw.get("proxy") or "text")
    if proxy not in PROXY_MODES:
        raise KeyfileError(f"{where}: proxy {proxy!r} not supported; use one of {', '.join(PROXY_MODES)}")
    phonemes = raw.get("phonemes")
    if isinstance(phonemes, list):
        phonemes = " ".join(str(p) for p in phonemes)
    metadata = raw.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata) if metadata.strip() else None
    if metadata is not None and not isinstance(metadata, dict):
        raise KeyfileError(f"{where}: metadata must be a mapping (a JSON object in CSV)")
    return KeywordSpec(
        text, threshold, sensitivity, proxy, str(phonemes).strip() or None if phonemes else None, metadata
    )


def load_keywords(path: Path | str) -> list[KeywordSpec]:
    """Read and validate every entry; raises :class:`KeyfileError` naming the first bad one."""
    p = Path(path)
    fmt = _format(p)
    try:
        content = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyfileError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    if fmt == "yaml":
        try:
            doc = yaml.safe_load(content)
        except yaml.YAMLError as e:
            raise KeyfileError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
        if isinstance(doc, dict) and "keywords" in doc:
            doc = doc["keywords"]
        if not isinstance(doc, list):
            raise KeyfileError(f"{p}: expected a list of keywords (or 'keywords:' with a list)")
        rows: list[tuple[str, Any]] = [(f"{p}, keyword {i + 1}", r) for i, r in enumerate(doc)]
    else:
        reader = csv.DictReader(io.StringIO(content))
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise KeyfileError(f"{p}: the CSV needs a header row with 'text' (columns: {', '.join(FIELDS)})")
        rows = [
            (f"{p}, line {reader.line_num}", {k: v for k, v in r.items() if k is not None}) for r in reader
        ]
    try:
        specs = [_spec(where, r) for where, r in rows]
    except json.JSONDecodeError as e:
        raise KeyfileError(f"{p}: metadata is not a JSON object ({e.msg})") from None
    if not specs:
        raise KeyfileError(f"{p} lists no keywords")
    return specs


def dump_keywords(specs: list[KeywordSpec], path: Path | str) -> None:
    """Write ``specs`` as YAML or CSV (by suffix); unset fields are left out (YAML) or empty (CSV)."""
    p = Path(path)
    fmt = _format(p)
    if fmt == "yaml":
        docs = [
            {f.name: getattr(s, f.name) for f in fields(s) if getattr(s, f.name) is not None} for s in specs
        ]
        text = yaml.safe_dump({"keywords": docs}, sort_keys=False, allow_unicode=True)
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        for s in specs:
            w.writerow(
                [
                    ""
                    if getattr(s, k) is None
                    else json.dumps(s.metadata)
                    if k == "metadata"
                    else getattr(s, k)
                    for k in FIELDS
                ]
            )
        text = buf.getvalue()
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as e:
        raise KeyfileError(f"cannot write {p}: {e.strerror or e}") from None
