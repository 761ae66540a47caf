"""`openkws keywords ...`: enroll, list, change, remove, import and export keywords on a running server.

Re-enrolling a text that exists with another threshold changes the threshold (and says so): the
server's enrollment is idempotent and keeps the old one, so the CLI follows it with a PATCH.

``import`` is all-or-nothing for files of any size. The file is validated first (the REST field rules,
:mod:`openkws.keywords.fields`), then sent in batch requests of at most ``--batch-size`` keywords (the
server's ``max_batch_keywords``, default 1000; each batch is one transaction), then thresholds of
already-enrolled texts are patched. If any request fails, the CLI undoes what this import did: it
deletes the keywords the import created and puts back the thresholds it changed, then reports the
error. Until then, streams may match keywords of the batches already committed; and if the CLI itself
is killed half-way, or a batch commits on the server after ``--timeout`` made the CLI give up, nothing
undoes those batches (re-running the import is idempotent).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from openkws.cli.common import DEFAULT_URL, KeyOpt, UrlOpt, client, fail, handled
from openkws.engine.calibration import MAX_TARGET_FA_PER_HOUR, MIN_TARGET_FA_PER_HOUR

keywords_app = typer.Typer(
    no_args_is_help=True, help="Enroll, list, change, remove, import and export keywords on a running server."
)


class ProxyChoice(str, Enum):
    """``openkws.engine.acoustic_proxy.PROXY_MODES`` as CLI choices (the server validates them too)."""

    text = "text"
    tts = "tts"
    both = "both"


# Sensitivity is the target false alarms per hour (the API's target_fa_per_hour), not a [0, 1] dial.
SensitivityOpt = Annotated[
    float | None,
    typer.Option(
        "--sensitivity",
        "--fa-per-hour",
        min=MIN_TARGET_FA_PER_HOUR,
        max=MAX_TARGET_FA_PER_HOUR,
        help=(
            "instead of --threshold: the false alarms per hour to expect on background speech; the server sets "
            "the threshold from its calibration bank (default 0.5)"
        ),
    ),
]


def _no_sensitivity(e: Any) -> None:
    """A server without the ``sensitivity`` field rejects it as an unknown input: say so plainly."""
    if getattr(e, "status", None) == 422 and "target_fa_per_hour" in str(getattr(e, "message", "")):
        fail("this server does not offer sensitivity (it takes raw cosine thresholds); use --threshold")


def _show(kw: dict[str, Any], state: str) -> None:
    fa, hits = kw.get("expected_fa_per_hour"), kw.get("expected_hit_rate")
    extra = f"\texpected {fa:g} false alarms/h" if isinstance(fa, int | float) else ""
    extra += f"\texpected hit rate {hits:.0%} (TTS estimate)" if isinstance(hits, int | float) else ""
    typer.echo(
        f"{kw['id']}\t{kw['text']}\t{' '.join(kw['phonemes'])}\tthreshold={kw['threshold']}\t"
        f"proxy={kw['proxy']}{extra}\t({state})"
    )
    for w in kw.get("warnings", []):
        typer.secho(f"  warning: {w}", fg=typer.colors.YELLOW)
    for cf in kw.get("confusable_with", []):
        typer.secho(
            f"  confusable with {cf['id']} {cf['text']!r}: cosine {cf['cosine']:.2f}, "
            f"phoneme distance {cf['phoneme_distance']:.2f} ({cf['reason']})",
            fg=typer.colors.YELLOW,
        )
    if kw.get("guessed_words"):
        typer.secho(
            f"  pronunciation guessed for {', '.join(kw['guessed_words'])}: check the phonemes above, or "
            "enroll again with --phonemes",
            fg=typer.colors.YELLOW,
        )


def _enroll(c: Any, bodies: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Enroll; where a text existed with another threshold or sensitivity, apply the new one."""
    from openkws.client import OpenKWSError

    try:
        items = [c.add_keyword(**bodies[0])] if len(bodies) == 1 else c.add_keyword_items(bodies)
    except OpenKWSError as e:
        _no_sensitivity(e)
        raise
    out = []
    for body, kw in zip(bodies, items, strict=True):
        state = "enrolled" if kw["created"] else "already enrolled"
        wanted = {k: body[k] for k in ("threshold", "target_fa_per_hour") if body.get(k) is not None}
        if (
            not kw["created"]
            and wanted
            and ("target_fa_per_hour" in wanted or abs(wanted["threshold"] - kw["threshold"]) > 1e-9)
        ):
            old = kw["threshold"]
            kw = {**kw, **c.update_keyword(kw["id"], **wanted)}
            state = f"already enrolled; threshold {old:g} -> {kw['threshold']:g}"
        out.append((kw, state))
    return out


@keywords_app.command("add")
def keywords_add(
    texts: Annotated[list[str], typer.Argument(help="keyword texts, e.g. 'hey jarvis'")],
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="cosine threshold")] = None,
    sensitivity: SensitivityOpt = None,
    proxy: Annotated[
        ProxyChoice | None,
        typer.Option(
            help="keyword proxy: text (default), tts (from espeak-ng/flite renditions; better on confusable keywords, "
            "~0.5 s more per keyword) or both"
        ),
    ] = None,
    phonemes: Annotated[
        str | None,
        typer.Option(
            help=(
                "pronunciation override for one keyword: ARPAbet, '|' between words, e.g. 'EH K S | K EY | S IY | D IY'"
            )
        ),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Enroll keywords; prints id, normalized text, phonemes, threshold, proxy and any confusable keywords."""
    if threshold is not None and sensitivity is not None:
        fail("give --threshold or --sensitivity, not both", 2)
    if phonemes is not None and len(texts) != 1:
        fail("--phonemes applies to one keyword; enroll the others separately", 2)
    extra = {
        "threshold": threshold,
        "target_fa_per_hour": sensitivity,
        "phonemes": phonemes,
        "proxy": None if proxy is None else proxy.value,
    }
    bodies = [{"text": t, **{k: v for k, v in extra.items() if v is not None}} for t in texts]
    with client(url, api_key) as c, handled():
        for kw, state in _enroll(c, bodies):
            _show(kw, state)


@keywords_app.command("set")
def keywords_set(
    keyword_id: Annotated[int, typer.Argument(help="keyword id (from `openkws keywords list`)")],
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="cosine threshold")] = None,
    sensitivity: SensitivityOpt = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Change a keyword's threshold (or sensitivity); running streams use it from their next decode."""
    from openkws.client import OpenKWSError

    if (threshold is None) == (sensitivity is None):
        fail("give exactly one of --threshold or --sensitivity", 2)
    with client(url, api_key) as c, handled():
        try:
            kw = c.update_keyword(keyword_id, threshold=threshold, target_fa_per_hour=sensitivity)
        except OpenKWSError as e:
            _no_sensitivity(e)
            raise
        _show({"confusable_with": [], **kw}, "updated")


@keywords_app.command("list")
def keywords_list(
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List enrolled keywords."""
    with client(url, api_key) as c, handled():
        items = c.list_keywords()
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for kw in items:
        fa = kw.get("expected_fa_per_hour")
        extra = f"\texpected {fa:g} FA/h" if isinstance(fa, int | float) else ""
        typer.echo(
            f"{kw['id']}\t{kw['text']}\tthreshold={kw['threshold']}{extra}\tproxy={kw['proxy']}\t"
            f"{' '.join(kw['phonemes'])}"
        )


@keywords_app.command("rm")
def keywords_rm(
    ids: Annotated[list[int], typer.Argument(help="keyword ids")],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Delete keywords by id."""
    with client(url, api_key) as c, handled():
        for i in ids:
            c.delete_keyword(i)
            typer.echo(f"deleted {i}")


class _Undo:
    """What an import changed, so a failure can put it back."""

    def __init__(self) -> None:
        self.created: list[int] = []
        self.thresholds: list[tuple[int, float]] = []  # (id, threshold before this import)

    def run(self, c: Any) -> str:
        """Undo everything (newest first); returns what was done, or what could not be undone."""
        left: list[str] = []
        for kid, old in reversed(self.thresholds):
            try:
                c.update_keyword(kid, threshold=old)
            except Exception as e:  # keep undoing the rest; report it
                left.append(f"keyword {kid} keeps its new threshold (restore {old:g}: {e})")
        for kid in reversed(self.created):
            try:
                c.delete_keyword(kid)
            except Exception as e:
                left.append(f"keyword {kid} is still enrolled ({e})")
        done = f"deleted the {len(self.created)} keyword(s) it enrolled, restored {len(self.thresholds)} threshold(s)"
        if left:
            return f"{done}, except: {'; '.join(left[:10])}" + (
                f" (+{len(left) - 10} more)" if len(left) > 10 else ""
            )
        return f"{done}: the server is as before the import"


def _import(c: Any, bodies: list[dict[str, Any]], batch_size: int) -> list[tuple[dict[str, Any], str]]:
    """Enroll in batches, then patch thresholds; on any failure undo it all and exit 1."""
    from openkws.client import OpenKWSError

    undo = _Undo()
    n_batches = (len(bodies) + batch_size - 1) // batch_size
    step = "enrolling"
    try:
        items: list[dict[str, Any]] = []
        for b in range(n_batches):
            step = f"batch {b + 1} of {n_batches} (keywords {b * batch_size + 1}-{min(len(bodies), (b + 1) * batch_size)})"
            got = c.add_keyword_items(bodies[b * batch_size : (b + 1) * batch_size])
            undo.created += [kw["id"] for kw in got if kw["created"]]
            items += got
        out = []
        for i, (body, kw) in enumerate(zip(bodies, items, strict=True)):
            state = "enrolled" if kw["created"] else "already enrolled"
            wanted = {k: body[k] for k in ("threshold", "target_fa_per_hour") if body.get(k) is not None}
            if (
                not kw["created"]
                and wanted
                and ("target_fa_per_hour" in wanted or abs(wanted["threshold"] - kw["threshold"]) > 1e-9)
            ):
                step = f"changing the threshold of keyword {i + 1} ({kw['text']!r})"
                old = kw["threshold"]
                undo.thresholds.append((kw["id"], old))
                kw = {**kw, **c.update_keyword(kw["id"], **wanted)}
                state = f"already enrolled; threshold {old:g} -> {kw['threshold']:g}"
            out.append((kw, state))
        return out
    except OpenKWSError as e:
        _no_sensitivity(e)
        fail(f"import failed at {step}: {e.message}; undone: {undo.run(c)}")


@keywords_app.command("import")
def keywords_import(
    file: Annotated[
        Path, typer.Argument(help="YAML (.yaml/.yml) or CSV (.csv) keyword list", dir_okay=False)
    ],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="seconds to wait for each batch request (1000 keywords with proxy tts take minutes)",
        ),
    ] = 600.0,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1, help="keywords per request (the server's OPENKWS_MAX_BATCH_KEYWORDS, default 1000)"
        ),
    ] = 1000,
) -> None:
    """Enroll every keyword of a file, all or nothing (validated first; sent in batches, undone on a
    failure); existing texts get the file's threshold."""
    from openkws.client import OpenKWSClient
    from openkws.keywords.keyfile import load_keywords

    with handled():
        specs = load_keywords(file)
        http = OpenKWSClient(url, api_key=api_key, timeout=timeout)
    with http as c, handled():
        done = _import(c, [s.request() for s in specs], batch_size)
    for kw, state in done:
        _show(kw, state)
    typer.echo(f"imported {len(done)} keyword(s) from {file}", err=True)


@keywords_app.command("export")
def keywords_export(
    file: Annotated[
        Path, typer.Argument(help="YAML (.yaml/.yml) or CSV (.csv) file to write", dir_okay=False)
    ],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Write every enrolled keyword (text, threshold, proxy, phonemes, metadata) to a file."""
    from openkws.keywords.keyfile import KeywordSpec, dump_keywords

    with client(url, api_key) as c, handled():
        specs = [KeywordSpec.from_api(kw) for kw in c.list_keywords()]
        dump_keywords(specs, file)
    typer.echo(f"exported {len(specs)} keyword(s) to {file}", err=True)
