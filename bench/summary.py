"""The closing table of `python manage.py bench`: every goal of the benchmarks, with Thalian's figure, the
same-schema raw SQL and the lean limit measured in the same run, the ratio the goal is about, and whether it
is met. Built from the dicts the areas' ``run()`` return; an area that did not run (or could not measure a
figure) shows "–" and "not run"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DASH = "–"


@dataclass
class Row:
    work: str
    thalian: str
    raw: str
    lean: str
    ratio: str
    goal: str
    met: bool | None  # None: not measured (or not the figure the goal needs)


def _get(results: dict[str, Any], area: str, *path: str) -> Any:
    value: Any = results.get(area) or {}
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def _first(results: dict[str, Any], area: str, *keys: str) -> Any:
    """The first of ``keys`` an area's result has (areas name the same figure slightly differently)."""
    for key in keys:
        value = _get(results, area, key)
        if value is not None:
            return value
    return None


def _seconds(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f} s"


def _rate(rows: int | None, seconds: float | None) -> float | None:
    return rows / seconds if rows and seconds else None


def _row(work: str, goal: str, check: Callable[[], tuple[str, str, str, str, bool | None]]) -> Row:
    try:
        thalian, raw, lean, ratio, met = check()
    except (TypeError, ZeroDivisionError):  # a figure the area did not measure
        return Row(work, DASH, DASH, DASH, DASH, goal, None)
    return Row(work, thalian, raw, lean, ratio, goal, met)


def rows_for(results: dict[str, Any], rows: int) -> list[Row]:
    def inventory():
        ours = _rate(_get(results, "inventory", "import", "rows"), _get(results, "inventory", "import", "seconds"))
        raw = _rate(_get(results, "inventory", "copy", "rows"), _get(results, "inventory", "copy", "seconds"))
        share = ours / raw
        seconds = _get(results, "inventory", "import", "seconds")
        return f"{ours:,.0f} rows/s ({seconds:.1f} s)", f"COPY {raw:,.0f} rows/s", DASH, f"{share:.1%} of COPY", \
            share >= 0.10

    def snapshot():
        ours = _first(results, "snapshot", "thalian_s", "snapshot_seconds")
        raw = _first(results, "snapshot", "raw_s", "raw_seconds")
        lean = _first(results, "snapshot", "lean_s", "lean_seconds")
        if lean is None:  # a snapshot benchmark without the lean limit: its figures, no verdict
            return _seconds(ours), _seconds(raw), DASH, f"{ours / raw:.2f}x raw", None
        ratio = ours / lean
        return _seconds(ours), _seconds(raw), _seconds(lean), f"{ratio:.2f}x lean", ratio <= 4

    def bulk():
        ours, raw = _get(results, "review", "bulk_s"), _get(results, "review", "bulk_raw_s")
        ratio = ours / raw
        return _seconds(ours), _seconds(raw), DASH, f"{ratio:.2f}x raw", ratio <= 1.5

    def page():
        p95 = _get(results, "review", "page_p95_ms")
        return f"p95 {p95:.0f} ms", DASH, DASH, DASH, p95 < 100

    def csv_export():
        ours, raw, lean = (_get(results, "evidence", k) for k in ("total", "copy_s", "lean_s"))
        ttfb = _get(results, "evidence", "ttfb")
        ratio = ours / raw
        return f"{ours:.2f} s, first byte {ttfb * 1000:.0f} ms", f"COPY {raw:.2f} s", _seconds(lean), \
            f"{ratio:.2f}x COPY", ratio <= 1.5

    def evidence_zip():
        seconds, ratio = _get(results, "evidence", "zip_s"), _get(results, "evidence", "zip_ratio")
        rss, verified = _get(results, "evidence", "zip_rss_mb"), _get(results, "evidence", "zip_verified")
        return f"{seconds:.2f} s, RSS {rss:.0f} MB{'' if verified else ', NOT verified'}", DASH, DASH, \
            f"{ratio:.2f}x CSV", ratio <= 3 and rss < 200 and bool(verified)

    def tickets():
        per_second = _get(results, "itsm", "tickets_per_second")
        duplicates, raw = _get(results, "itsm", "duplicates"), _get(results, "itsm", "raw_per_second")
        return f"{per_second:,.0f} tickets/s, {duplicates} duplicates", f"fake takes {raw:,.0f} posts/s", DASH, \
            f"{per_second / raw:.0%} of raw HTTP", per_second >= 60 and duplicates == 0

    items = _get(results, "itsm", "items") or max(100, rows // 100)
    return [
        _row(f"import a {rows:,}-row entitlements CSV", ">= 10% of raw COPY", inventory),
        _row("snapshot at launch", "<= 4x the lean limit", snapshot),
        _row(f"approve all in view, {rows // 10:,} items", "<= 1.5x same-schema raw", bulk),
        _row("item page, 8 concurrent clients", "p95 < 100 ms", page),
        _row("CSV export", "<= 1.5x the same-columns COPY", csv_export),
        _row("signed evidence ZIP above the async threshold", "<= 3x the CSV export, RSS < 200 MB", evidence_zip),
        _row(f"{items:,} revokes -> tickets, 4 workers", ">= 60 tickets/s, 0 duplicates", tickets),
    ]


def table(results: dict[str, Any], rows: int) -> str:
    header = ("work", "Thalian", "same-schema raw SQL", "lean limit", "ratio", "goal", "")
    lines = [
        (r.work, r.thalian, r.raw, r.lean, r.ratio, r.goal, "not run" if r.met is None else
         "met" if r.met else "NOT MET")
        for r in rows_for(results, rows)
    ]  # fmt: skip
    widths = [max(len(str(cells[n])) for cells in [header, *lines]) for n in range(len(header))]

    def line(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, lines)])
