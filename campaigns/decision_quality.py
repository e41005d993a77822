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
decisions): one sort of the events per reviewer in time order feeds every window, and only bursts long enough
to be flagged have their pace measured. Medians use PostgreSQL's percentile_cont; on SQLite (the embedded
default) the middle row(s) of a ROW_NUMBER ranking.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field

from django.core.cache import cache
from django.db import connection, transaction
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


def _median(source: str, keys: str) -> str:
    """Median of `gap` per `keys` over the rows of `source`: PostgreSQL's ordered-set aggregate, elsewhere the
    middle row(s) of a ROW_NUMBER ranking."""
    if connection.vendor == "postgresql":
        return f"SELECT {keys}, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median FROM {source} GROUP BY {keys}"
    return (
        f"SELECT {keys}, AVG(gap) AS median FROM (SELECT {keys}, gap, "
        f"ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY gap) AS rn, COUNT(*) OVER (PARTITION BY {keys}) AS cnt "
        f"FROM {source}) ranked WHERE rn IN ((cnt + 1) / 2, (cnt + 2) / 2) GROUP BY {keys}"
    )


def _sql() -> str:
    events = DecisionEvent._meta.db_table
    items = ReviewItem._meta.db_table
    # One sort of the campaign's events per reviewer in time order feeds every window: the gap to the
    # previous decision of any kind (LAG), the gap to the previous single decision (the latest single decision
    # before the row) and, one level up over the same order, the burst numbers (gaps and islands). Rows are
    # kept narrow (flags as 0/1) so the sort of a million decisions stays in memory.
    last_single = "MAX(CASE WHEN single = 1 THEN created_at END) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    new_burst = "CASE WHEN single = 1 AND (gap IS NULL OR gap > %(burst_gap)s) THEN 1 ELSE 0 END"
    return f"""
    WITH bursts AS (
        SELECT paced.*, SUM({new_burst}) OVER (PARTITION BY actor_email ORDER BY created_at, id
                                              ROWS UNBOUNDED PRECEDING) AS burst
        FROM (
            SELECT ev.*, {_seconds("created_at", "LAG(created_at) OVER w")} AS gap_any,
                   {_seconds("created_at", last_single)} AS gap
            FROM (
                SELECT e.id, e.actor_email, e.actor_role, e.created_at, e.bulk_id,
                       CASE WHEN e.kind = 'single' THEN 1 ELSE 0 END AS single,
                       CASE WHEN e.decision = 'approve' THEN 1 ELSE 0 END AS approve,
                       CASE WHEN i.recommendation = 'revoke' THEN 1 ELSE 0 END AS advised_revoke,
                       CASE WHEN i.is_privileged THEN 1 ELSE 0 END AS privileged
                FROM {events} e JOIN {items} i ON i.id = e.item_id
                WHERE e.organization_id = %(org)s AND e.campaign_id = %(campaign)s AND e.kind <> 'system'
            ) ev
            WINDOW w AS (PARTITION BY actor_email ORDER BY created_at, id)
        ) paced
    ),
    burst_sizes AS (
        SELECT actor_email, burst, COUNT(*) AS n, SUM(approve) AS approvals
        FROM bursts WHERE single = 1 GROUP BY actor_email, burst
    ),
    -- Only bursts long and approving enough can be flagged; their pace is the only one measured.
    candidates AS (
        SELECT actor_email, burst, n FROM burst_sizes
        WHERE n >= %(burst_min)s AND approvals * 100.0 >= %(burst_approve)s * n
    ),
    candidate_gaps AS (
        SELECT b.actor_email, b.burst, b.gap FROM bursts b
        JOIN candidates c ON c.actor_email = b.actor_email AND c.burst = b.burst
        WHERE b.single = 1 AND b.gap IS NOT NULL AND b.gap <= %(burst_gap)s
    ),
    burst_medians AS ({_median("candidate_gaps", "actor_email, burst")}),
    flagged_bursts AS (
        SELECT c.actor_email, COUNT(*) AS flagged, MAX(c.n) AS largest
        FROM candidates c JOIN burst_medians m ON m.actor_email = c.actor_email AND m.burst = c.burst
        WHERE m.median < %(burst_median)s
        GROUP BY c.actor_email
    ),
    longest AS (SELECT actor_email, MAX(n) AS longest FROM burst_sizes GROUP BY actor_email),
    single_gaps AS (SELECT actor_email, gap FROM bursts WHERE single = 1 AND gap IS NOT NULL),
    medians AS ({_median("single_gaps", "actor_email")}),
    bulk_revoke AS (
        SELECT actor_email, COUNT(*) AS n FROM (
            SELECT DISTINCT actor_email, bulk_id FROM bursts
            WHERE single = 0 AND bulk_id IS NOT NULL AND approve = 1 AND advised_revoke = 1
        ) approvals GROUP BY actor_email
    ),
    totals AS (
        SELECT actor_email, MAX(actor_role) AS actor_role, COUNT(*) AS decisions,
               SUM(single) AS single_decisions, COUNT(*) - SUM(single) AS bulk_decisions,
               SUM(approve) AS approvals, SUM(approve * advised_revoke) AS against,
               SUM(approve * privileged) AS privileged_approved,
               SUM(CASE WHEN single = 1 AND approve = 1 AND privileged = 1
                         AND gap_any IS NOT NULL AND gap_any < %(privileged_seconds)s THEN 1 ELSE 0 END)
                   AS quick_privileged,
               MIN(created_at) AS first_at, MAX(created_at) AS last_at
        FROM bursts GROUP BY actor_email
    )
    SELECT t.actor_email, t.actor_role, t.decisions, t.single_decisions, t.bulk_decisions, t.approvals, t.against,
           t.privileged_approved, t.quick_privileged, COALESCE(r.n, 0), m.median,
           COALESCE(l.longest, 0), COALESCE(f.flagged, 0), COALESCE(f.largest, 0), t.first_at, t.last_at
    FROM totals t
    LEFT JOIN medians m ON m.actor_email = t.actor_email
    LEFT JOIN longest l ON l.actor_email = t.actor_email
    LEFT JOIN flagged_bursts f ON f.actor_email = t.actor_email
    LEFT JOIN bulk_revoke r ON r.actor_email = t.actor_email
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


CACHE_SECONDS = 24 * 3600


def campaign_decision_quality(*, campaign: Campaign) -> list[ReviewerQuality]:
    """One row per person who decided items of the campaign (system decisions excluded), flags included.

    Decision history is append-only and the items' recommendations are frozen, so the answer only changes
    with a new decision event or other thresholds: it is cached under the campaign's last event id and the
    thresholds, and the page, the API, the evidence and the flag check share one computation."""
    t = thresholds_for(campaign)
    last_event = (
        DecisionEvent.objects.filter(organization_id=campaign.organization_id, campaign_id=campaign.pk)
        .order_by("-id").values_list("id", flat=True).first()
    )
    key = f"decision-quality:{campaign.pk}:{last_event}:{hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]}"
    cached = cache.get(key)
    if cached is None:
        cached = _compute(campaign, t)
        cache.set(key, cached, CACHE_SECONDS)
    return cached


def _compute(campaign: Campaign, t: dict) -> list[ReviewerQuality]:
    params = {
        "org": campaign.organization_id,
        "campaign": Campaign._meta.pk.get_db_prep_value(campaign.pk, connection),
        "burst_gap": float(t["burst_gap_seconds"]),
        "burst_min": int(t["burst_min_decisions"]),
        "burst_median": float(t["burst_max_median_seconds"]),
        "burst_approve": float(t["burst_min_approve_percent"]),
        "privileged_seconds": float(t["privileged_min_seconds"]),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A few sorts of every decision of the campaign: in memory rather than through temporary files.
            cursor.execute("SET LOCAL work_mem = '128MB'")
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
