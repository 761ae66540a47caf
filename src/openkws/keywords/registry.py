"""Keyword registry operations: the durable store and the in-memory index, kept in step.

Every write goes store first, index second, under one lock: a keyword is visible to streams only
after it is durable, and a deleted keyword leaves the index (and every stream, at its next decode)
right after its row is gone. The store is the single source of truth: at start-up
:meth:`KeywordRegistry.reconcile` compares the (empty or stale) index with the store, rebuilds it
when they are out of step, and checks the result.

Proxies: ``text`` (the text encoder's embedding of the phonemes; the default), ``tts`` (the
acoustic encoder's mean embedding of the keyword spoken by the 8 espeak-ng and flite voices of
:data:`openkws.text.tts.PROXY_VOICES`; ~0.5 s per keyword) or ``both`` (their normalised sum). Acoustic
proxies are stored with the keyword, so a restart does not synthesize again (unless the model makes
them another way: :mod:`openkws.keywords.stored_proxies` says what then becomes of their thresholds).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.engine.index import KeywordEntry
from openkws.engine.spotter import Enrollment, Spotter
from openkws.keywords.confusables import ConfusionPolicy, find_confusables
from openkws.keywords.enrollment import Enrolled, EnrollItem, IndexDiff, InvalidKeywordText, TooManyKeywords
from openkws.keywords.sensitivity import NoCalibrationBank, Sensitivity, estimate_hit_rates
from openkws.keywords.store import KeywordNotFound, KeywordRecord, KeywordStore, NewKeyword
from openkws.keywords.stored_proxies import new_threshold, report, restore
from openkws.text import G2PError, Pronunciation
from openkws.text.g2p import check_keyword_text
from openkws.text.pronunciation import override
from openkws.text.tts import ProxyTTS

log = logging.getLogger("openkws")


# The expected hit rate renders 32 TTS renditions per keyword (seconds each): worth it for a user
# enrolling a few keywords, not for a 1,000-keyword import, whose keywords get no estimate.
HIT_RATE_MAX_BATCH = 8


class KeywordRegistry:
    def __init__(
        self,
        store: KeywordStore,
        spotter: Spotter,
        default_threshold: float | None = None,
        confusion: ConfusionPolicy | None = None,
        max_keywords_per_tenant: int | None = None,
        tts: ProxyTTS | None = None,
        on_removed: Callable[[str, Sequence[int]], None] | None = None,
        sensitivity: Sensitivity | None = None,
        hit_rate: bool = True,
    ) -> None:
        self.store = store
        self.hit_rate = hit_rate  # estimate new keywords' expected hit rate (engine/hit_rate.py)
        self.on_removed = on_removed  # told which ids left the index (per-keyword counters drop them)
        self.tts = tts or ProxyTTS()
        self.max_keywords_per_tenant = max_keywords_per_tenant
        self.spotter = spotter
        self.default_threshold = spotter.default_threshold if default_threshold is None else default_threshold
        self.confusion = confusion or ConfusionPolicy()
        # an operator's explicit default threshold wins over the default FA/h target
        self._explicit_default = default_threshold is not None
        self.sensitivity = sensitivity or Sensitivity(None, self.default_threshold)
        self._write = threading.Lock()

    def rebuild_index(self) -> int:
        """Rebuild the index from the store (text proxies recomputed, acoustic ones reused); returns the count."""
        with self._write:
            records = self.store.all()
            self.index_records(records, replace_all=True)
            return len(records)

    def acoustic_proxy(self, text: str, mode: str = "tts") -> np.ndarray:
        """The acoustic proxy [D] of normalized keyword ``text`` for proxy ``mode``; raises ``TTSUnavailable``/``TTSError``."""
        return self.spotter.acoustic_proxy(self.tts.renditions(text), mode)

    def index_records(
        self, records: Sequence[KeywordRecord], replace_all: bool = False
    ) -> list[KeywordEntry]:
        """Enroll stored keywords in the index (``replace_all``: the index holds exactly these). Call it
        holding the write lock. Text proxies are recomputed; an acoustic proxy is read from the store
        when this model made it the same way, else synthesized again and written back, its threshold
        carried or reset (:mod:`openkws.keywords.stored_proxies`)."""
        plan = [restore(r, self.spotter, self.acoustic_proxy) for r in records]
        entries = self.spotter.enroll([p.row for p in plan], replace=replace_all)
        moved: dict[str, dict[int, float]] = {}
        carried: list[KeywordRecord] = []
        reset: list[KeywordRecord] = []
        for r, p, e in zip(records, plan, entries, strict=True):
            if p.outcome in ("relabel", "remade"):
                self.store.set_proxy(r.id, e.proxy, self.spotter.proxy_fingerprint_for(r.proxy_mode))
            if p.outcome not in ("remade", "text_fallback"):
                continue
            thr, kept_rate = new_threshold(r, p, e.proxy, self.spotter, self.sensitivity, self._default_for)
            if not kept_rate:
                reset.append(r)
            elif thr != r.threshold:
                carried.append(r)
            if thr != r.threshold:
                try:
                    self.store.set_threshold(r.tenant, r.id, thr)
                except KeywordNotFound:  # deleted meanwhile: the change feed removes it
                    continue
                moved.setdefault(r.tenant, {})[r.id] = thr
        for tenant, updates in moved.items():
            self.spotter.index.set_thresholds(tenant, updates)
        report(carried, reset)
        return [replace(e, threshold=moved.get(e.tenant, {}).get(e.id, e.threshold)) for e in entries]

    def _default_for(self, mode: ProxyMode, proxy: np.ndarray, phonemes: Sequence[str]) -> float:
        """The threshold a new enrollment with this proxy gets (no explicit threshold or target)."""
        return self._threshold(EnrollItem("", proxy=mode), proxy, phonemes)

    def check_index(self) -> IndexDiff:
        """Compare the index with the store: ids per tenant and thresholds."""
        with self._write:
            stored = self.store.thresholds()
            index = self.spotter.index
            missing: list[int] = []
            extra: list[int] = []
            changed: list[int] = []
            for tenant in set(stored) | set(index.tenants()):
                want = stored.get(tenant, {})
                have = index.tenant(tenant).by_id
                missing += [i for i in want if i not in have]
                extra += [i for i in have if i not in want]
                changed += [i for i, t in want.items() if i in have and abs(have[i].threshold - t) > 1e-9]
            return IndexDiff(tuple(sorted(missing)), tuple(sorted(extra)), tuple(sorted(changed)))

    def reconcile(self) -> tuple[int, IndexDiff]:
        """Start-up check: when the index and the store are out of step (always, for the empty index
        of a fresh process with keywords stored), rebuild the index from the store, then verify.
        Returns (keywords indexed, the difference found before rebuilding)."""
        found = self.check_index()
        if found:
            self.rebuild_index()
        after = self.check_index()
        if after:  # a concurrent writer (another replica) between rebuild and check: sync catches up
            self.sync()
            after = self.check_index()
            if after:
                raise RuntimeError(f"keyword index still out of step with the store after a rebuild: {after}")
        return self.spotter.index.total(), found

    def sync(self) -> tuple[int, int, int]:
        """Bring the index in step with the store (other replicas' writes, or a gap after a crash):
        add missing keywords, drop deleted ones, apply changed thresholds. Returns (added, removed, updated)."""
        with self._write:
            records = self.store.all()
            index = self.spotter.index
            by_tenant: dict[str, dict[int, KeywordRecord]] = {}
            for r in records:
                by_tenant.setdefault(r.tenant, {})[r.id] = r
            added = removed = updated = 0
            for tenant in set(by_tenant) | set(index.tenants()):
                stored = by_tenant.get(tenant, {})
                current = index.tenant(tenant)
                gone = [i for i in current.by_id if i not in stored]
                if gone:
                    index.remove(tenant, gone)
                    removed += len(gone)
                    if self.on_removed is not None:
                        self.on_removed(tenant, gone)
                new = [r for i, r in stored.items() if i not in current.by_id]
                if new:
                    self.index_records(new)
                    added += len(new)
                changed = {
                    i: r.threshold
                    for i, r in stored.items()
                    if i in current.by_id and abs(current.by_id[i].threshold - r.threshold) > 1e-9
                }
                if changed:
                    index.set_thresholds(tenant, changed)
                    updated += len(changed)
            return added, removed, updated

    def pronounce_all(self, items: Sequence[EnrollItem]) -> tuple[list[Pronunciation], list[tuple[str, ...]]]:
        """Pronunciations of the items' texts, and each text's rewrites (see ``check_keyword_text``)."""
        prons, rewrites = [], []
        for i, item in enumerate(items):
            try:
                checked = check_keyword_text(item.text)
                pron = self.spotter.pronounce(checked.text)
                if item.phonemes is not None:
                    pron = override(pron, item.phonemes, self.spotter.g2p.inventory)
                prons.append(pron)
            except G2PError as e:
                raise InvalidKeywordText(i, e) from e
            rewrites.append(checked.rewrites)
        return prons, rewrites

    def enroll(self, tenant: str, items: Sequence[EnrollItem]) -> list[Enrolled]:
        """Validate all texts first (all-or-nothing), then insert new ones and update the index once.

        Acoustic proxies (``tts``/``both``) are synthesized here, before the write lock, and only for
        texts not enrolled yet (an existing text is returned unchanged); this blocks for the
        synthesis, so call it from a worker thread. Raises ``TTSUnavailable`` when espeak-ng is missing.
        """
        prons, rewrites = self.pronounce_all(items)
        waves: dict[str, list[np.ndarray]] = {}  # renditions synthesized for acoustic proxies, reused
        proxies = self._new_proxies(tenant, prons, [it.proxy for it in items], waves)
        thresholds = [
            self._threshold(it, proxy, p.phonemes) for it, proxy, p in zip(items, proxies, prons, strict=True)
        ]
        known = {e.text for e in self.spotter.index.tenant(tenant).by_id.values()}  # hit rates: new texts
        unseen = [None if p.text in known else x for p, x in zip(prons, proxies, strict=True)]
        rates = (
            estimate_hit_rates(
                self.spotter,
                self.tts,
                [p.text for p in prons],
                unseen,
                thresholds,
                [it.proxy for it in items],
                waves,
            )
            if self.hit_rate and len(items) <= HIT_RATE_MAX_BATCH
            else [(None, [])] * len(items)
        )
        news = [
            NewKeyword(
                p.text,
                p.phonemes,
                thr,
                it.metadata,
                it.proxy,
                None if it.proxy == "text" else proxy,
                None if it.proxy == "text" else self.spotter.proxy_fingerprint_for(it.proxy),
            )
            for p, it, proxy, thr in zip(prons, items, proxies, thresholds, strict=True)
        ]
        with self._write:
            before = self.spotter.index.tenant(tenant)
            if self.max_keywords_per_tenant is not None:
                known = {e.text for e in before.by_id.values()}
                new = {n.text for n in news} - known
                if new and len(before) + len(new) > self.max_keywords_per_tenant:
                    raise TooManyKeywords(len(before), len(new), self.max_keywords_per_tenant)
            results = self.store.add_many(tenant, news)
            fresh: dict[int, Enrollment] = {}
            heal: dict[int, KeywordRecord] = {}
            for (rec, created), proxy in zip(results, proxies, strict=True):
                if created and proxy is not None:
                    fresh[rec.id] = Enrollment(
                        rec.id, tenant, rec.text, rec.phonemes, rec.threshold, rec.proxy_mode, proxy=proxy
                    )
                elif rec.id not in before and rec.id not in fresh:  # also heals a store/index gap
                    heal[rec.id] = rec
            entries = {e.id: e for e in self.spotter.enroll(list(fresh.values()))}
            entries.update((e.id, e) for e in self.index_records(list(heal.values())))
        out: list[Enrolled] = []
        seen: list[tuple[KeywordRecord, np.ndarray]] = []
        for (rec, created), changed, (rate, notes) in zip(results, rewrites, rates, strict=True):
            current = entries.get(rec.id) or before.by_id.get(rec.id)
            assert current is not None, "every enrolled keyword is in the index or in this batch's entries"
            conf = find_confusables(rec, current.proxy, before, seen, self.confusion)
            expected = self.sensitivity.expected_fa_per_hour(current.proxy, rec.threshold, rec.phonemes)
            warn = self.sensitivity.warnings(
                rec.phonemes, expected, [c.text for c in conf if c.reason == "one_word"]
            )
            out.append(Enrolled(rec, created, conf, changed, expected, tuple(warn + notes), rate))
            if all(rec.id != r.id for r, _ in seen):
                seen.append((rec, current.proxy))
        return out

    def _threshold(self, item: EnrollItem, proxy: np.ndarray | None, phonemes: Sequence[str] = ()) -> float:
        """Raw threshold > FA/h target > the operator's default threshold > the default FA/h target
        (:meth:`Sensitivity.choose`, which the library's ``add_keyword`` uses too)."""
        if proxy is None:  # a text already enrolled keeps its stored threshold: this value is not used
            if item.target_fa_per_hour is not None and not self.sensitivity.available:
                raise NoCalibrationBank()
            return self.default_threshold
        explicit = self.default_threshold if self._explicit_default else None
        return self.sensitivity.choose(proxy, item.threshold, item.target_fa_per_hour, explicit, phonemes)

    def set_target(self, tenant: str, keyword_id: int, target_fa_per_hour: float) -> KeywordRecord:
        """Set the threshold that meets ``target_fa_per_hour`` for this keyword's proxy."""
        self.store.get(tenant, keyword_id)  # raises KeywordNotFound
        entry = self.spotter.index.tenant(tenant).by_id.get(keyword_id)
        if not self.sensitivity.available:
            raise NoCalibrationBank()
        if entry is None:  # in the store, not yet in this replica's index
            raise KeywordNotFound(keyword_id)
        return self.set_threshold(
            tenant, keyword_id, self.sensitivity.threshold(entry.proxy, target_fa_per_hour, entry.phonemes)
        )

    def expected_fa_per_hour(self, tenant: str, keyword_id: int, threshold: float) -> float | None:
        """Expected false alarms per hour of a keyword at ``threshold`` (None without a bank)."""
        entry = self.spotter.index.tenant(tenant).by_id.get(keyword_id)
        return (
            None
            if entry is None
            else self.sensitivity.expected_fa_per_hour(entry.proxy, threshold, entry.phonemes)
        )

    def _new_proxies(
        self,
        tenant: str,
        prons: Sequence[Pronunciation],
        modes: Sequence[ProxyMode],
        waves: dict[str, list[np.ndarray]],
    ) -> list[np.ndarray | None]:
        """Proxies for texts the tenant has not enrolled (None for the others: they stay unchanged)."""
        enrolled = {e.text for e in self.spotter.index.tenant(tenant).by_id.values()}
        acoustic: dict[tuple[str, str], np.ndarray] = {}  # a text twice in one batch is synthesized once
        wanted = [mode == "text" or p.text not in enrolled for p, mode in zip(prons, modes, strict=True)]
        for p, mode, want in zip(prons, modes, wanted, strict=True):
            if want and mode != "text" and (p.text, mode) not in acoustic:
                if p.text not in waves:
                    waves[p.text] = self.tts.renditions(p.text)
                acoustic[p.text, mode] = self.spotter.acoustic_proxy(waves[p.text], mode)
        made = iter(
            self.spotter.keyword_proxies(
                [p.phonemes for p, w in zip(prons, wanted, strict=True) if w],
                [m for m, w in zip(modes, wanted, strict=True) if w],
                [acoustic.get((p.text, m)) for p, m, w in zip(prons, modes, wanted, strict=True) if w],
            )
        )
        return [next(made) if w else None for w in wanted]

    def get(self, tenant: str, keyword_id: int) -> KeywordRecord:
        return self.store.get(tenant, keyword_id)

    def page(self, tenant: str, after: int | None, limit: int) -> list[KeywordRecord]:
        return self.store.page(tenant, after, limit)

    def count(self, tenant: str | None = None) -> int:
        return self.store.count(tenant)

    def set_threshold(self, tenant: str, keyword_id: int, threshold: float) -> KeywordRecord:
        with self._write:
            rec = self.store.set_threshold(tenant, keyword_id, threshold)
            self.spotter.index.set_thresholds(tenant, {keyword_id: threshold})
            return rec

    def delete(self, tenant: str, keyword_id: int) -> KeywordRecord:
        with self._write:
            rec = self.store.delete(tenant, keyword_id)
            self.spotter.index.remove(tenant, [keyword_id])
        if self.on_removed is not None:
            self.on_removed(tenant, [keyword_id])
        return rec

    def total(self) -> int:
        """Keywords in the index, every tenant (the ``openkws_enrolled_keywords`` gauge reads this)."""
        return self.spotter.index.total()

    def indexed(self, tenant: str) -> int:
        """Keywords a stream of ``tenant`` matches when it gives no subset."""
        return len(self.spotter.index.tenant(tenant))

    def indexed_texts(self, tenant: str) -> list[str]:
        """Normalized texts of ``tenant``'s keywords in the index, by id: the last snapshot, which
        stays available while the database is away."""
        by_id = self.spotter.index.tenant(tenant).by_id
        return [by_id[i].text for i in sorted(by_id)]

    def texts(self, tenant: str, ids: Sequence[int]) -> dict[int, str]:
        """Normalized texts of the enrolled ``ids`` (deleted ones are left out)."""
        by_id = self.spotter.index.tenant(tenant).by_id
        return {i: by_id[i].text for i in ids if i in by_id}

    def missing(self, tenant: str, ids: Sequence[int]) -> list[int]:
        """Ids not enrolled for ``tenant`` (used to validate a stream's keyword subset)."""
        t = self.spotter.index.tenant(tenant)
        return sorted({i for i in ids if i not in t})
