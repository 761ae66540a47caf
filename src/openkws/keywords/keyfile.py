"""Keyword lists as files (``openkws keywords import|export``): YAML or CSV, chosen by suffix.

Each keyword has ``text`` and optionally ``threshold`` (cosine) or ``sensitivity`` (the target
false alarms per hour; the server sets the threshold from its calibration bank), ``proxy`` (text | tts | both), ``phonemes`` (ARPAbet, ``|`` between words) and
``metadata`` (a JSON object; a JSON string in CSV). YAML is a list, or a mapping with ``keywords:``.

The field rules are REST's (:mod:`openkws.keywords.fields`): ``text`` must be a string, numbers must be
numbers (not booleans or strings), metadata holds finite numbers only, and two entries whose texts
normalise to the same stored text are an error naming both. Where files differ from JSON:

* YAML is read with the YAML 1.2 core rules, not PyYAML's 1.1 ones: only ``true``/``false`` are
  booleans and only decimal numbers are numbers, so ``text: on`` is the word "on" and ``0x1F`` or
  ``1_000`` stay strings (REST reads the same strings). Aliases (``*name``) are refused (a 429-byte
  "billion laughs" file expanded to gigabytes) and files above :data:`MAX_FILE_BYTES` are refused unread.
* CSV cells are all text: ``threshold`` and ``sensitivity`` are parsed as decimal numbers (``0.5``,
  ``5e-1``; not ``0x1F``, ``1_000``, ``nan`` or ``true``); ``metadata`` is a JSON object. A row with more
  cells than the header, or an unterminated quote, is an error.

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
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from openkws.engine.acoustic_proxy import PROXY_MODES
from openkws.engine.calibration import MAX_TARGET_FA_PER_HOUR, MIN_TARGET_FA_PER_HOUR
from openkws.keywords.fields import (
    THRESHOLD_RANGE,
    finite_json,
    phoneme_tokens,
    stored_text,
)
from openkws.text import G2PError

FIELDS = ("text", "threshold", "sensitivity", "proxy", "phonemes", "metadata")
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}
MAX_FILE_BYTES = 16 << 20  # ~16 batches of 1000 keywords with 1 KiB of metadata each


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
        """The ``POST /v1/keywords`` body (phonemes as a list: the limit counts symbols)."""
        body: dict[str, Any] = {"text": self.text, "proxy": self.proxy}
        for k, field in (
            ("threshold", "threshold"),
            ("sensitivity", "target_fa_per_hour"),
            ("metadata", "metadata"),
        ):
            v = getattr(self, k)
            if v is not None:
                body[field] = v
        if self.phonemes is not None:
            body["phonemes"] = list(phoneme_tokens(self.phonemes))
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
    "threshold": (*THRESHOLD_RANGE, "a value in [0, 1]"),
    "sensitivity": (
        MIN_TARGET_FA_PER_HOUR,
        MAX_TARGET_FA_PER_HOUR,
        f"false alarms per hour in [{MIN_TARGET_FA_PER_HOUR:g}, {MAX_TARGET_FA_PER_HOUR:g}]",
    ),
}
_DECIMAL = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _number(where: str, name: str, value: Any, csv_cell: bool) -> float | None:
    """A number as REST takes it; a CSV cell (always text) must read as a plain decimal number."""
    if value is None or (csv_cell and value.strip() == ""):
        return None
    if csv_cell:
        numeric = _DECIMAL.match(value.strip()) is not None
    else:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric:
        what = f"{str(value).lower()} is a boolean," if isinstance(value, bool) else f"{value!r} is"
        raise KeyfileError(f"{where}: {name} {what} not a number; write a decimal number like 0.5")
    x = float(value)
    lo, hi, what = RANGES[name]
    if not lo <= x <= hi:  # NaN fails this too
        raise KeyfileError(f"{where}: {name} {x:g} is out of range; use {what}")
    return x


def _string(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        shown = "a boolean" if isinstance(value, bool) else f"{type(value).__name__} {value!r}"
        written = str(value).lower() if isinstance(value, bool) else value
        raise KeyfileError(f'{where}: {name} is {shown}, not a string; quote it, e.g. {name}: "{written}"')
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; use finite numbers or strings")


def _metadata(where: str, value: Any, csv_cell: bool) -> dict[str, Any] | None:
    if csv_cell:
        if value is None or not value.strip():
            return None
        try:
            value = json.loads(value, parse_constant=_no_constants)
        except (json.JSONDecodeError, ValueError) as e:
            raise KeyfileError(f"{where}: metadata is not a JSON object ({getattr(e, 'msg', e)})") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise KeyfileError(f"{where}: metadata must be a mapping (a JSON object in CSV)")
    try:
        finite_json(value)
    except ValueError as e:
        raise KeyfileError(f"{where}: {e}") from None
    return value


def _spec(where: str, raw: Any, csv_cell: bool = False) -> KeywordSpec:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise KeyfileError(f"{where}: expected a mapping with 'text', got {type(raw).__name__}")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise KeyfileError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}")
    if raw.get("text") is None:
        raise KeyfileError(f"{where}: 'text' is missing or empty")
    text = _string(where, "text", raw["text"]).strip()
    if not text:
        raise KeyfileError(f"{where}: 'text' is missing or empty")
    threshold = _number(where, "threshold", raw.get("threshold"), csv_cell)
    sensitivity = _number(where, "sensitivity", raw.get("sensitivity"), csv_cell)
    if threshold is not None and sensitivity is not None:
        raise KeyfileError(f"{where}: give threshold or sensitivity, not both")
    proxy = raw.get("proxy")
    proxy = "text" if proxy is None or proxy == "" else _string(where, "proxy", proxy)
    if proxy not in PROXY_MODES:
        raise KeyfileError(f"{where}: proxy {proxy!r} not supported; use one of {', '.join(PROXY_MODES)}")
    phonemes = raw.get("phonemes")
    if isinstance(phonemes, list):
        phonemes = " ".join(_string(where, "phonemes[]", p) for p in phonemes)
    elif phonemes is not None:
        phonemes = _string(where, "phonemes", phonemes)
    try:
        if phonemes:
            phoneme_tokens(phonemes)
    except ValueError as e:
        raise KeyfileError(f"{where}: {e}") from None
    metadata = _metadata(where, raw.get("metadata"), csv_cell)
    return KeywordSpec(
        text, threshold, sensitivity, proxy, phonemes.strip() or None if phonemes else None, metadata
    )


class _NoAliasCoreLoader(yaml.SafeLoader):
    """Safe YAML with the 1.2 core scalar rules and no aliases (see the module docstring)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise KeyfileError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted in "
                "keyword files; write each entry out in full"
            )
        return super().compose_node(parent, index)


for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
):
    _NoAliasCoreLoader.add_implicit_resolver(_tag, re.compile(_regexp), _first)


def _yaml_rows(p: Path, content: str) -> list[tuple[str, Any]]:
    try:
        doc = yaml.load(content, Loader=_NoAliasCoreLoader)  # noqa: S506  (a safe loader subclass)
    except KeyfileError as e:
        raise KeyfileError(f"{p}, {e}") from None
    except yaml.YAMLError as e:
        raise KeyfileError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise KeyfileError(f"{p}: YAML nested too deeply; a keyword file is a flat list") from None
    if isinstance(doc, dict) and "keywords" in doc:
        doc = doc["keywords"]
    if not isinstance(doc, list):
        raise KeyfileError(f"{p}: expected a list of keywords (or 'keywords:' with a list)")
    return [(f"{p}, keyword {i + 1}", r) for i, r in enumerate(doc)]


def _csv_rows(p: Path, content: str) -> list[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(content), strict=True)
    try:
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise KeyfileError(f"{p}: the CSV needs a header row with 'text' (columns: {', '.join(FIELDS)})")
        rows = []
        for r in reader:
            where = f"{p}, line {reader.line_num}"
            if None in r:  # DictReader's restkey: cells beyond the header
                extra = r[None]
                raise KeyfileError(
                    f"{where}: {len(extra)} cell(s) more than the header's {len(reader.fieldnames)} columns "
                    f"({extra!r}); quote cells that contain commas"
                )
            rows.append((where, {k: v for k, v in r.items() if v is not None}))
    except csv.Error as e:
        raise KeyfileError(
            f"{p}, after line {reader.line_num}: not valid CSV ({e}); check for an unterminated quote"
        ) from None
    return rows


def load_keywords(path: Path | str) -> list[KeywordSpec]:
    """Read and validate every entry; raises :class:`KeyfileError` naming the first bad one."""
    p = Path(path)
    fmt = _format(p)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise KeyfileError(
                f"{p} is {size} bytes; at most {MAX_FILE_BYTES} are accepted (split it into several files)"
            )
        content = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyfileError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    rows = _yaml_rows(p, content) if fmt == "yaml" else _csv_rows(p, content)
    specs = [_spec(where, r, csv_cell=fmt == "csv") for where, r in rows]
    if not specs:
        raise KeyfileError(f"{p} lists no keywords")
    _check_texts(p, [w for w, _ in rows], specs)
    return specs


def _check_texts(p: Path, wheres: list[str], specs: list[KeywordSpec]) -> None:
    """Each text valid as enrollment requires, and no two alike once normalised (the service would
    store one keyword for both, with the first one's threshold)."""
    seen: dict[str, list[int]] = {}
    for i, (where, s) in enumerate(zip(wheres, specs, strict=True)):
        try:
            key = stored_text(s.text)
        except G2PError as e:
            raise KeyfileError(f"{where}: text {s.text!r}: {e.message}") from None
        seen.setdefault(key, []).append(i)
    dups = [ix for ix in seen.values() if len(ix) > 1]
    if dups:
        unit = "line" if wheres[0].rpartition(", ")[2].startswith("line") else "keyword"
        parts = [
            f"{unit}s {', '.join(wheres[i].rpartition(' ')[2] for i in ix)} "
            f"({', '.join(repr(specs[i].text) for i in ix)} are all {stored_text(specs[ix[0]].text)!r})"
            for ix in dups[:5]
        ]
        raise KeyfileError(
            f"{p}: the same keyword more than once after normalisation: {'; '.join(parts)}; keep one of each"
        )


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
