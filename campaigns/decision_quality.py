"""Decision quality: how each reviewer of a campaign decided, and flags for rubber-stamping.

Per reviewer (the person who made the decisions, from the decision history): decisions made, the share made
in bulk, the median seconds between consecutive single decisions, the approve rate, approvals against a revoke
recommendation, privileged items approved, and the longest burst (consecutive single decisions each within
`burst_gap_seconds` of the previous one). Flags, with the organization's thresholds:

- `rubber_stamp_burst`: a burst of at least `burst_min_decisions` single decisions whose median gap is under
  `burst_max_median_seconds` with at least `burst_min_approve_percent` approvals;
- `quick_privileged_approval`: a privileged item approved one by one less than `privileged_min_seconds` after
  the reviewer's previous decision;
- `bulk_approval_with_recommended_revoke`: a bulk approval that included items recommended for revoke.

Everything is one SQL statement of window functions over the campaign's decision events (no Python loop over
decisions), so a million-item campaign costs one sort of its events. Medians are the middle row(s) of a
ROW_NUMBER ranking, which PostgreSQL and SQLite both run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from thalian.models import default_decision_quality_thresholds

from .models import Campaign, DecisionEvent, ReviewItem

FLAG_LABELS = {
    "rubber_stamp_burst": "Fast approval burst",
    "quick_privileged_approval": "Privileged access approved in seconds",
    "bulk_approval_with_recommended_revoke": "Bulk approval included recommended revokes",
}


@dataclass
class Flag:
    code: str
    message: str

    @property
    def label(self) -> str:
        return FLAG_LABELS[self.code]


@dataclass
class ReviewerQuality:
    reviewer_email: str
    reviewer_role: str
    decisions: int
    single_decisions: int
    bulk_decisions: int
    bulk_share_percent: float
    median_seconds_between_single: float | None
    approve_rate_percent: float
    approvals_against_recommendation: int
    privileged_approved: int
    longest_burst: int
    flagged_bursts: int
    largest_flagged_burst: int
    quick_privileged_approvals: int
    bulk_approvals_with_recommended_revoke: int
    first_decision_at: object = None
    last_decision_at: object = None
    flags: list[Flag] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["flags"] = [{"code": f.code, "label": f.label, "message": f.message} for f in self.flags]
        return data


def thresholds_for(campaign: Campaign) -> dict:
    return {**default_decision_quality_thresholds(), **(campaign.organization.decision_quality_thresholds or {})}


def _seconds(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) AS double precision)"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def _sql() -> str:
    events = DecisionEvent._meta.db_table
    items = ReviewItem._meta.db_table
    previous = "LAG(created_at) OVER (PARTITION BY actor_email ORDER BY created_at, id)"
    return f"""
    WITH ev AS (
        SELECT e.id, e.actor_email, e.actor_role, e.kind, e.bulk_id, e.decision, e.created_at,
               i.recommendation, CASE WHEN i.is_privileged THEN 1 ELSE 0 END AS privileged
        FROM {events} e JOIN {items} i ON i.id = e.item_id
        WHERE e.organization_id = %(org)s AND e.campaign_id = %(campaign)s AND e.kind <> 'system'
    ),
    -- Gap to the reviewer's previous decision of any kind (for privileged approvals).
    timed AS (
        SELECT ev.*, {_seconds("created_at", previous)} AS gap_any FROM ev
    ),
    -- Gap between consecutive single decisions (bulk decisions are not paced by a person).
    singles AS (
        SELECT id, actor_email, decision, created_at, {_seconds("created_at", previous)} AS gap
        FROM ev WHERE kind = 'single'
    ),
    -- Gaps and islands: a new burst starts at a reviewer's first single decision or after a longer pause.
    bursts AS (
        SELECT singles.*, SUM(CASE WHEN gap IS NULL OR gap > %(burst_gap)s THEN 1 ELSE 0 END)
               OVER (PARTITION BY actor_email ORDER BY created_at, id ROWS UNBOUNDED PRECEDING) AS burst
        FROM singles
    ),
    burst_sizes AS (
        SELECT actor_email, burst, COUNT(*) AS n,
               SUM(CASE WHEN decision = 'approve' THEN 1 ELSE 0 END) AS approvals
        FROM bursts GROUP BY actor_email, burst
    ),
    burst_ranked AS (
        SELECT actor_email, burst, gap,
               ROW_NUMBER() OVER (PARTITION BY actor_email, burst ORDER BY gap) AS rn,
               COUNT(*) OVER (PARTITION BY actor_email, burst) AS cnt
        FROM bursts WHERE gap IS NOT NULL AND gap <= %(burst_gap)s
    ),
    burst_medians AS (
        SELECT actor_email, burst, AVG(gap) AS median FROM burst_ranked
        WHERE rn IN ((cnt + 1) / 2, (cnt + 2) / 2) GROUP BY actor_email, burst
    ),
    flagged_bursts AS (
        SELECT s.actor_email, COUNT(*) AS flagged, MAX(s.n) AS largest
        FROM burst_sizes s JOIN burst_medians m ON m.actor_email = s.actor_email AND m.burst = s.burst
        WHERE s.n >= %(burst_min)s AND m.median < %(burst_median)s AND s.approvals * 100.0 >= %(burst_approve)s * s.n
        GROUP BY s.actor_email
    ),
    longest AS (SELECT actor_email, MAX(n) AS longest FROM burst_sizes GROUP BY actor_email),
    single_ranked AS (
        SELECT actor_email, gap, ROW_NUMBER() OVER (PARTITION BY actor_email ORDER BY gap) AS rn,
               COUNT(*) OVER (PARTITION BY actor_email) AS cnt
        FROM singles WHERE gap IS NOT NULL
    ),
    medians AS (
        SELECT actor_email, AVG(gap) AS median FROM single_ranked
        WHERE rn IN ((cnt + 1) / 2, (cnt + 2) / 2) GROUP BY actor_email
    ),
    totals AS (
        SELECT actor_email, MAX(actor_role) AS actor_role, COUNT(*) AS decisions,
               SUM(CASE WHEN kind = 'single' THEN 1 ELSE 0 END) AS single_decisions,
               SUM(CASE WHEN kind = 'bulk' THEN 1 ELSE 0 END) AS bulk_decisions,
               SUM(CASE WHEN decision = 'approve' THEN 1 ELSE 0 END) AS approvals,
               SUM(CASE WHEN decision = 'approve' AND recommendation = 'revoke' THEN 1 ELSE 0 END) AS against,
               SUM(CASE WHEN decision = 'approve' AND privileged = 1 THEN 1 ELSE 0 END) AS privileged_approved,
               SUM(CASE WHEN kind = 'single' AND decision = 'approve' AND privileged = 1
                         AND gap_any IS NOT NULL AND gap_any < %(privileged_seconds)s THEN 1 ELSE 0 END)
                   AS quick_privileged,
               COUNT(DISTINCT CASE WHEN kind = 'bulk' AND decision = 'approve' AND recommendation = 'revoke'
                                   THEN bulk_id END) AS bulk_with_revoke,
               MIN(created_at) AS first_at, MAX(created_at) AS last_at
        FROM timed GROUP BY actor_email
    )
    SELECT t.actor_email, t.actor_role, t.decisions, t.single_decisions, t.bulk_decisions, t.approvals, t.against,
           t.privileged_approved, t.quick_privileged, t.bulk_with_revoke, m.median,
           COALESCE(l.longest, 0), COALESCE(f.flagged, 0), COALESCE(f.largest, 0), t.first_at, t.last_at
    FROM totals t
    LEFT JOIN medians m ON m.actor_email = t.actor_email
    LEFT JOIN longest l ON l.actor_email = t.actor_email
    LEFT JOIN flagged_bursts f ON f.actor_email = t.actor_email
    ORDER BY t.actor_email
    """


def _aware(value):
    """Raw SQL on SQLite returns timestamps as text."""
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, dt.UTC)
    return value


def _percent(part: int, whole: int) -> float:
    return round(part * 100.0 / whole, 1) if whole else 0.0


def campaign_decision_quality(*, campaign: Campaign) -> list[ReviewerQuality]:
    """One row per person who decided items of the campaign (system decisions excluded), flags included."""
    t = thresholds_for(campaign)
    params = {
        "org": campaign.organization_id,
        "campaign": Campaign._meta.pk.get_db_prep_value(campaign.pk, connection),
        "burst_gap": float(t["burst_gap_seconds"]),
        "burst_min": int(t["burst_min_decisions"]),
        "burst_median": float(t["burst_max_median_seconds"]),
        "burst_approve": float(t["burst_min_approve_percent"]),
        "privileged_seconds": float(t["privileged_min_seconds"]),
    }
    with connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        rows = cursor.fetchall()
    result = []
    for (email, role, decisions, single, bulk, approvals, against, privileged, quick, bulk_revoke, median, longest,
         flagged, largest, first_at, last_at) in rows:
        quality = ReviewerQuality(
            reviewer_email=email,
            reviewer_role=role or "",
            decisions=decisions,
            single_decisions=single,
            bulk_decisions=bulk,
            bulk_share_percent=_percent(bulk, decisions),
            median_seconds_between_single=round(float(median), 1) if median is not None else None,
            approve_rate_percent=_percent(approvals, decisions),
            approvals_against_recommendation=against,
            privileged_approved=privileged,
            longest_burst=longest,
            flagged_bursts=flagged,
            largest_flagged_burst=largest,
            quick_privileged_approvals=quick,
            bulk_approvals_with_recommended_revoke=bulk_revoke,
            first_decision_at=_aware(first_at),
            last_decision_at=_aware(last_at),
        )
        if flagged:
            quality.flags.append(Flag(
                "rubber_stamp_burst",
                f"{flagged} burst(s) of at least {t['burst_min_decisions']} single decisions at a median under "
                f"{t['burst_max_median_seconds']:g} s with at least {t['burst_min_approve_percent']:g}% approvals "
                f"(largest: {largest} decisions)",
            ))
        if quick:
            quality.flags.append(Flag(
                "quick_privileged_approval",
                f"{quick} privileged item(s) approved less than {t['privileged_min_seconds']:g} s after the "
                "previous decision",
            ))
        if bulk_revoke and t.get("flag_bulk_recommended_revoke", True):
            quality.flags.append(Flag(
                "bulk_approval_with_recommended_revoke",
                f"{bulk_revoke} bulk approval(s) included items recommended for revoke",
            ))
        result.append(quality)
    return result


CSV_COLUMNS = (
    "reviewer", "reviewer_role", "decisions", "single_decisions", "bulk_decisions", "bulk_share_percent",
    "median_seconds_between_single", "approve_rate_percent", "approvals_against_recommendation",
    "privileged_approved", "longest_burst", "flagged", "flags",
)


def csv_rows(rows: list[ReviewerQuality]) -> list[list]:
    return [
        [
            r.reviewer_email, r.reviewer_role, r.decisions, r.single_decisions, r.bulk_decisions,
            r.bulk_share_percent, "" if r.median_seconds_between_single is None else r.median_seconds_between_single,
            r.approve_rate_percent, r.approvals_against_recommendation, r.privileged_approved, r.longest_burst,
            "yes" if r.flags else "no", "; ".join(f"{f.code}: {f.message}" for f in r.flags),
        ]
        for r in rows
    ]


def chart(rows: list[ReviewerQuality], *, width: int = 640, bar: int = 22, gap: int = 10, label: int = 220) -> dict:
    """Geometry of a server-rendered SVG bar chart (no script, no inline style): per reviewer, single and bulk
    decisions as one stacked bar, flagged reviewers marked."""
    longest = max((r.decisions for r in rows), default=0) or 1
    span = width - label - 60
    bars = []
    for n, r in enumerate(rows):
        y = n * (bar + gap)
        single_w = round(r.single_decisions * span / longest, 1)
        bulk_w = round(r.bulk_decisions * span / longest, 1)
        bars.append({
            "row": r, "y": y, "text_y": y + bar * 0.7, "x": label, "single_w": single_w, "bulk_x": label + single_w,
            "bulk_w": bulk_w, "total_x": label + single_w + bulk_w + 6,
        })
    return {"width": width, "height": max(len(rows), 1) * (bar + gap) + 24, "bar": bar, "bars": bars,
            "legend_y": max(len(rows), 1) * (bar + gap) + 14, "label": label}
