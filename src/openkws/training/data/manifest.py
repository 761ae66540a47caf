"""The synthesis manifest: one CSV row per clip, ``path`` relative to the manifest's directory.

Columns: ``path,text,phonemes,voice,engine,duration,split`` (``phonemes`` is the shared G2P's
output joined by spaces, ``|`` between words; ``duration`` in seconds). Rows are appended as
clips finish, so a manifest being written is always readable: a torn last line is dropped.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> row = ManifestRow("clips/a.wav", "hi", "HH AY", "espeak:en-us+m3", "espeak", 0.5, "train")
    >>> with ManifestWriter(d / "manifest.csv") as w:
    ...     w.write(row)
    >>> [r.text for r in read_manifest(d / "manifest.csv")]
    ['hi']
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from types import TracebackType

COLUMNS: tuple[str, ...] = ("path", "text", "phonemes", "voice", "engine", "duration", "split")
VALID_SPLITS = frozenset({"train", "dev", "test"})


@dataclass(frozen=True)
class ManifestRow:
    path: str
    text: str
    phonemes: str
    voice: str
    engine: str
    duration: float
    split: str

    def as_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def read_manifest(path: str | Path, absolute: bool = False) -> list[ManifestRow]:
    """Read a manifest; ``absolute=True`` resolves ``path`` against the manifest's directory.

    A last line torn by a concurrent writer (wrong number of fields) is skipped.
    """
    path = Path(path)
    rows: list[ManifestRow] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return rows
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: header {header}, expected {list(COLUMNS)}")
        for rec in reader:
            if len(rec) != len(COLUMNS) or rec[6] not in VALID_SPLITS:
                continue
            try:
                duration = float(rec[5])
            except ValueError:
                continue
            clip = str(path.parent / rec[0]) if absolute else rec[0]
            rows.append(ManifestRow(clip, rec[1], rec[2], rec[3], rec[4], duration, rec[6]))
    return rows


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """Write a complete manifest atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(_fmt(r))
    os.replace(tmp, path)


def _fmt(row: ManifestRow) -> tuple[object, ...]:
    values = list(astuple(row))
    values[5] = f"{row.duration:.3f}"
    return tuple(values)


class ManifestWriter:
    """Append rows to a manifest, writing the header for a new file and flushing every row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        torn = False
        if not new:  # a killed writer may have left half a line: end it so it is dropped on read
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        self._f = self.path.open("a", newline="")
        if torn:
            self._f.write("\n")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(COLUMNS)
            self._f.flush()

    def write(self, row: ManifestRow) -> None:
        self._w.writerow(_fmt(row))
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
