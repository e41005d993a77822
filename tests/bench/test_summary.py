"""The closing table of `manage.py bench`: every goal, with the same-run raw and lean figures, the ratio and
whether it is met."""

from bench import summary

RESULTS = {
    "inventory": {"import": {"rows": 100_000, "seconds": 2.0}, "copy": {"rows": 100_000, "seconds": 0.1}},
    "snapshot": {"thalian_s": 1.0, "raw_s": 0.9, "lean_s": 0.2},
    "review": {"bulk_s": 1.2, "bulk_raw_s": 1.0, "page_p95_ms": 80.0},
    "evidence": {"total": 1.4, "copy_s": 1.0, "lean_s": 0.5, "ttfb": 0.01, "zip_s": 5.0, "zip_ratio": 3.57,
                 "zip_rss_mb": 120.0, "zip_verified": True},
    "itsm": {"items": 1000, "tickets_per_second": 70.0, "duplicates": 0, "raw_per_second": 130.0},
}  # fmt: skip


NAMES = ["import", "snapshot", "bulk", "page", "csv", "zip", "tickets"]


def _rows(results):
    return dict(zip(NAMES, summary.rows_for(results, 100_000), strict=True))


def test_every_goal_has_a_row_with_its_ratio_and_verdict():
    rows = _rows(RESULTS)
    assert rows["import"].work == "import a 100,000-row entitlements CSV"
    assert (rows["import"].ratio, rows["import"].met) == ("5.0% of COPY", False)  # 5% < 10%
    assert (rows["snapshot"].lean, rows["snapshot"].met) == ("0.20 s", False)  # 5x the lean limit > 4x
    assert rows["bulk"].work == "approve all in view, 10,000 items" and rows["bulk"].met is True
    assert rows["page"].met is True
    assert (rows["csv"].ratio, rows["csv"].lean, rows["csv"].met) == ("1.40x COPY", "0.50 s", True)
    assert rows["zip"].met is False  # 3.57x the CSV export > 3x
    assert rows["tickets"].work.startswith("1,000 revokes") and rows["tickets"].met is True


def test_areas_that_did_not_run_say_so_and_the_table_prints_every_row():
    rows = _rows({"review": RESULTS["review"]})
    assert rows["csv"].met is None and rows["csv"].thalian == summary.DASH
    assert rows["page"].met is True
    text = summary.table({"review": RESULTS["review"]}, 100_000)
    assert text.count("not run") == 5 and text.count("| met ") == 2
    assert len(text.splitlines()) == 2 + 7


def test_a_snapshot_without_its_lean_limit_shows_its_figures_without_a_verdict():
    [snapshot] = [row for name, row in _rows({"snapshot": {"snapshot_seconds": 2.0, "raw_seconds": 1.0}}).items()
                  if name == "snapshot"]
    assert (snapshot.thalian, snapshot.raw, snapshot.ratio, snapshot.met) == ("2.00 s", "1.00 s", "2.00x raw", None)
