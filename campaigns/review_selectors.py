"""Reads for reviewing: which items a member may see, filters shared by pages, API and bulk decisions, keyset
pagination of a campaign's items, filter options, and the "My reviews" list."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from entitlements.models import FINDING_FIELDS, Finding, FindingsMixin, IdentityKind, IdentityStatus
from thalian.models import Membership
from thalian.permissions import Perm, has_perm

from .models import MAX_STAGES, Campaign, CampaignStatus, Decision, DecisionEvent, ReviewItem

PENDING = "pending"
DECIDED = "decided"
DECISION_STATES = [PENDING, DECIDED, *Decision.values]
DECISION_STATE_LABELS = {PENDING: "Pending", DECIDED: "Decided", **dict(Decision.choices)}
REVIEWER_ME = "me"
MAX_SEARCH_LENGTH = 200
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

# Sort keys and their column. Each one has an index (organization, campaign, <column>, id), so a page is an
# index range scan from the cursor onwards whatever its depth.
SORTS = {
    "id": "id",
    "application": "application_name",
    "department": "identity_department",
    "decision": "decision",
}
SORT_LABELS = {"id": "Snapshot order", "application": "Application", "department": "Department", "decision": "Decision"}


# --------------------------------------------------------------------------------------------------
# Access
# --------------------------------------------------------------------------------------------------


def sees_all_items(membership: Membership) -> bool:
    return has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS)


def review_items_visible(*, campaign: Campaign, membership: Membership) -> QuerySet:
    """The campaign's items the member may see: all of them for roles that see every campaign, otherwise only
    the items assigned to them."""
    items = ReviewItem.objects.filter(campaign_id=campaign.pk)
    if not sees_all_items(membership):
        items = items.filter(reviewer_id=membership.pk)
    return items


def review_item_get(*, membership: Membership, campaign: Campaign, item_id) -> ReviewItem:
    try:
        item_id = int(item_id)
    except (TypeError, ValueError):
        raise Http404("No such item") from None
    item = review_items_visible(campaign=campaign, membership=membership).filter(pk=item_id).first()
    if item is None:
        raise Http404("No such item")
    item.campaign = campaign
    return item


def review_items_selected(*, campaign: Campaign, membership: Membership, item_ids) -> QuerySet:
    """Checked items for a bulk decision. Ids the member cannot see, or whose decision is signed off, are an
    error naming them, so a bulk request either applies to exactly what was chosen or changes nothing."""
    ids = sorted(set(item_ids))
    items = review_items_visible(campaign=campaign, membership=membership).filter(pk__in=ids)
    found = dict(items.values_list("pk", "signed_off_at"))
    unknown = [i for i in ids if i not in found]
    locked = [i for i in ids if found.get(i) is not None]
    errors = {}
    if unknown:
        errors["item_ids"] = f"No such items in this campaign for you: {_id_list(unknown)}."
    elif locked:
        errors["item_ids"] = f"These items are signed off and can no longer be changed: {_id_list(locked)}."
    if errors:
        raise ValidationError(errors)
    return items


def _id_list(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def review_item_history(*, item: ReviewItem) -> QuerySet:
    return DecisionEvent.objects.filter(item_id=item.pk).order_by("id")


def stages_hiding_earlier_decisions(*, campaign: Campaign, membership: Membership) -> frozenset[int]:
    """Stages whose reviewers do not see earlier stages' decisions, for a member who sees only their own items
    (roles that see every item always see the whole path). Empty for single-stage campaigns."""
    if not campaign.is_multi_stage or sees_all_items(membership):
        return frozenset()
    from .models import CampaignStage

    return frozenset(
        CampaignStage.objects.filter(campaign_id=campaign.pk, show_earlier_decisions=False).values_list(
            "number", flat=True
        )
    )


def item_stage_decisions(item: ReviewItem, *, hidden_stages: frozenset[int] = frozenset()) -> list[dict]:
    """The item's decisions stage by stage: the stages it passed, then its current decision (when decided).
    Earlier stages are left out where the item's stage hides them from its reviewer."""
    earlier = [] if item.stage in hidden_stages else list(item.stage_decisions or [])
    rows = [
        {"stage": e["stage"], "decision": e.get("decision"), "reason": e.get("reason", ""),
         "decided_by": e.get("decided_by", ""), "decided_by_role": e.get("decided_by_role", ""),
         "decided_at": e.get("decided_at")}
        for e in earlier
    ]
    if item.decision:
        rows.append({"stage": item.stage, "decision": item.decision, "reason": item.decision_reason,
                     "decided_by": item.decided_by_email, "decided_by_role": item.decided_by_role,
                     "decided_at": item.decided_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
                     if item.decided_at else None})
    return rows


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


@dataclass
class ItemFilter:
    """The items query: the same keys in page query strings, the API and bulk "all in view" requests."""

    decision: str = ""
    application: str = ""
    department: str = ""
    identity_kind: str = ""
    status: str = ""
    role: str = ""
    finding: str = ""
    recommendation: str = ""
    reviewer: str = ""
    search: str = ""
    stage: str = ""

    KEYS = (
        "decision", "application", "department", "identity_kind", "status", "role", "finding",
        "recommendation", "reviewer", "search", "stage",
    )

    @property
    def active(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k)}

    def describe(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.active.items()) or "no filters"


CHOICES = {
    "decision": DECISION_STATES,
    "identity_kind": IdentityKind.values,
    "status": IdentityStatus.values,
    "finding": [f.value for f in Finding],
    "recommendation": Decision.values,
    "stage": [str(n) for n in range(1, MAX_STAGES + 1)],
}


def item_filter_parse(params: Mapping, *, ignore: tuple[str, ...] = ()) -> ItemFilter:
    """Reads the filter keys from a query string or JSON object. Unknown values raise ValidationError naming the
    key; keys other than the filter keys are ignored unless they are in neither the filter keys nor `ignore`
    and the mapping is a JSON object (see item_filter_parse_strict)."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key in ItemFilter.KEYS:
        raw = params.get(key, "")
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            errors[key] = f"{key} must be a string."
            continue
        value = raw.strip()
        if key in CHOICES and value:
            value = value.lower()
            if value not in CHOICES[key]:
                errors[key] = f"Unknown {key.replace('_', ' ')} {value!r}; expected one of {', '.join(CHOICES[key])}."
                continue
        if key == "search" and len(value) > MAX_SEARCH_LENGTH:
            errors[key] = f"The search text is {len(value)} characters long; at most {MAX_SEARCH_LENGTH} are allowed."
            continue
        values[key] = value
    if errors:
        raise ValidationError(errors)
    return ItemFilter(**values)


def item_filter_parse_strict(params: Mapping) -> ItemFilter:
    """For JSON filter objects: unknown keys are an error too, so a typo cannot widen a bulk decision."""
    if not isinstance(params, Mapping):
        raise ValidationError({"filter": "filter must be an object with the items query keys."})
    unknown = sorted(set(params) - set(ItemFilter.KEYS))
    if unknown:
        raise ValidationError(
            {"filter": f"Unknown filter keys: {', '.join(unknown)}; allowed: {', '.join(ItemFilter.KEYS)}."}
        )
    return item_filter_parse(params)


def review_items_filter(items: QuerySet, flt: ItemFilter, *, membership: Membership) -> QuerySet:
    if flt.decision == PENDING:
        items = items.filter(decision="")
    elif flt.decision == DECIDED:
        items = items.exclude(decision="")
    elif flt.decision:
        items = items.filter(decision=flt.decision)
    if flt.application:
        items = items.filter(application_name=flt.application)
    if flt.department:
        items = items.filter(identity_department=flt.department)
    if flt.identity_kind:
        items = items.filter(identity_kind=flt.identity_kind)
    if flt.status:
        items = items.filter(identity_status=flt.status)
    if flt.role:
        items = items.filter(role__iexact=flt.role)
    if flt.finding:
        items = items.filter(**{FINDING_FIELDS[Finding(flt.finding)]: True})
    if flt.recommendation:
        items = items.filter(recommendation=flt.recommendation)
    if flt.stage:
        items = items.filter(stage=int(flt.stage))
    if flt.reviewer:
        if flt.reviewer.lower() == REVIEWER_ME:
            items = items.filter(reviewer_id=membership.pk)
        else:
            items = items.filter(reviewer_email__iexact=flt.reviewer)
    if flt.search:
        s = flt.search
        items = items.filter(
            Q(identity_email__icontains=s)
            | Q(identity_name__icontains=s)
            | Q(application_name__icontains=s)
            | Q(role__icontains=s)
            | Q(identity_department__icontains=s)
        )
    return items


def review_items_matching(*, campaign: Campaign, membership: Membership, flt: ItemFilter) -> QuerySet:
    """Every item the member sees that matches the filter: what "all in view" applies to."""
    return review_items_filter(review_items_visible(campaign=campaign, membership=membership), flt, membership=membership)


# --------------------------------------------------------------------------------------------------
# Keyset pagination
# --------------------------------------------------------------------------------------------------


@dataclass
class ItemPage:
    items: list[ReviewItem]
    sort: str
    next_cursor: str = ""
    prev_cursor: str = ""
    page_size: int = DEFAULT_PAGE_SIZE
    extra: dict = field(default_factory=dict)


def sort_parse(value: str | None) -> tuple[str, bool]:
    """"department" -> ("department", False); "-department" -> ("department", True). Unknown: ValidationError."""
    value = (value or "id").strip()
    descending = value.startswith("-")
    key = value.lstrip("-") or "id"
    if key not in SORTS:
        raise ValidationError({"sort": f"Unknown sort {key!r}; expected one of {', '.join(SORTS)}."})
    return key, descending


def _encode_cursor(sort: str, value, item_id: int, backwards: bool) -> str:
    raw = json.dumps([sort, value, item_id, 1 if backwards else 0], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cur_sort, value, item_id, backwards = json.loads(raw)
        item_id = int(item_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValidationError({"cursor": "The page cursor is not valid; start again from the first page."}) from exc
    if cur_sort != sort or (sort != "id" and not isinstance(value, str)):
        raise ValidationError({"cursor": "The page cursor belongs to another sort order; start from the first page."})
    return value, item_id, bool(backwards)


class ItemRow:
    """A review item as a list reads it: the fields it names (with ``pk``, ``findings`` and the sort columns
    among them), without building a model instance, which costs more than the query on a page of rows."""

    findings = FindingsMixin.findings

    def __init__(self, fields: tuple[str, ...], values: tuple) -> None:
        self.__dict__.update(zip(fields, values, strict=True))

    @property
    def pk(self):
        return self.id


def review_items_page(
    items: QuerySet,
    *,
    sort: str = "id",
    cursor: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    fields: tuple[str, ...] = (),
) -> ItemPage:
    """One page of items in (sort column, id) order after or before a cursor; one query. With ``fields`` (which
    must include ``id`` and the sort columns) the page holds ItemRow objects of those fields, else items.

    The cursor is compared as a row value ``(column, id) > (v, i)``, which PostgreSQL answers with a range scan
    of the matching (organization, campaign, column, id) index, so page 20,000 costs what page 1 costs."""
    key, descending = sort_parse(sort)
    column = SORTS[key]
    page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
    backwards = False
    table = ReviewItem._meta.db_table
    qn = connection.ops.quote_name
    if cursor:
        value, item_id, backwards = _decode_cursor(cursor, key)
        forward = not backwards
        greater = forward != descending
        op = ">" if greater else "<"
        if column == "id":
            items = items.filter(**{("id__gt" if greater else "id__lt"): item_id})
        else:
            items = items.extra(
                where=[f"({qn(table)}.{qn(column)}, {qn(table)}.{qn('id')}) {op} (%s, %s)"], params=[value, item_id]
            )
    reverse_order = descending != backwards
    columns = [column, "id"] if column != "id" else ["id"]
    ordering = [f"-{c}" for c in columns] if reverse_order else columns
    items = items.order_by(*ordering)[: page_size + 1]
    rows = [ItemRow(fields, values) for values in items.values_list(*fields)] if fields else list(items)
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
    page = ItemPage(items=rows, sort=("-" if descending else "") + key, page_size=page_size)
    if rows:
        first, last = rows[0], rows[-1]
        has_next = more if not backwards else True
        has_prev = bool(cursor) if not backwards else more
        if has_next:
            page.next_cursor = _encode_cursor(key, getattr(last, column), last.pk, False)
        if has_prev:
            page.prev_cursor = _encode_cursor(key, getattr(first, column), first.pk, True)
    return page


# --------------------------------------------------------------------------------------------------
# Filter options
# --------------------------------------------------------------------------------------------------

MAX_OPTIONS = 1000


def _distinct_loose_scan(campaign: Campaign, column: str) -> list[str]:
    """Distinct values of an indexed column over one campaign's items, one index probe per value (a "loose
    index scan" written as a recursive CTE): a few milliseconds on a million items with a few hundred values,
    where SELECT DISTINCT would read every row."""
    table = connection.ops.quote_name(ReviewItem._meta.db_table)
    col = connection.ops.quote_name(column)
    sql = f"""
        WITH RECURSIVE t(v, n) AS (
            (SELECT {col}, 1 FROM {table} WHERE organization_id = %s AND campaign_id = %s ORDER BY {col} LIMIT 1)
            UNION ALL
            SELECT (SELECT {col} FROM {table} WHERE organization_id = %s AND campaign_id = %s AND {col} > t.v
                    ORDER BY {col} LIMIT 1), t.n + 1
            FROM t WHERE t.v IS NOT NULL AND t.n < %s
        )
        SELECT v FROM t WHERE v IS NOT NULL
    """
    params = [campaign.organization_id, campaign.pk, campaign.organization_id, campaign.pk, MAX_OPTIONS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


REVIEWER_OPTIONS_TTL = 300
# The snapshot's options, also kept in the process for the most recently seen campaigns: they never change under
# their key, and the items page (the most loaded page) then skips a cache round trip.
_SNAPSHOT_OPTIONS: dict[str, dict[str, list[str]]] = {}
SNAPSHOT_OPTIONS_IN_PROCESS = 256


def review_filter_options(*, campaign: Campaign, membership: Membership) -> dict[str, list[str]]:
    """Application and department choices for the filter bar (read only: callers share the lists).

    Members who see every item get the values of the frozen snapshot: they never change, so they are computed
    once per campaign and cached (the key names the snapshot). Reviewers get the values of their own items
    (assignment can change when an admin reassigns items, so these are cached for a few minutes only)."""
    if sees_all_items(membership):
        key = f"review-options:{campaign.pk}:{campaign.snapshot_at and campaign.snapshot_at.timestamp()}"
        options = _SNAPSHOT_OPTIONS.get(key)
        if options is not None:
            return options
        options = cache.get(key)
        if options is None:
            if connection.vendor == "postgresql":
                options = {
                    "applications": _distinct_loose_scan(campaign, "application_name"),
                    "departments": [d for d in _distinct_loose_scan(campaign, "identity_department") if d],
                }
            else:
                options = _distinct_options(ReviewItem.objects.filter(campaign_id=campaign.pk))
            if campaign.status != CampaignStatus.LAUNCHING:
                cache.set(key, options, 24 * 3600)
        if campaign.status != CampaignStatus.LAUNCHING:
            if len(_SNAPSHOT_OPTIONS) >= SNAPSHOT_OPTIONS_IN_PROCESS:
                del _SNAPSHOT_OPTIONS[next(iter(_SNAPSHOT_OPTIONS))]  # the oldest
            _SNAPSHOT_OPTIONS[key] = options
        return options
    key = f"review-options:{campaign.pk}:reviewer:{membership.pk}"
    options = cache.get(key)
    if options is None:
        options = _distinct_options(review_items_visible(campaign=campaign, membership=membership))
        cache.set(key, options, REVIEWER_OPTIONS_TTL)
    return options


def _distinct_options(items: QuerySet) -> dict[str, list[str]]:
    """Both lists from one pass over the items (one GROUP BY instead of two DISTINCT scans)."""
    pairs = items.order_by().values_list("application_name", "identity_department").distinct()
    applications: set[str] = set()
    departments: set[str] = set()
    for application, department in pairs:
        applications.add(application)
        if department:
            departments.add(department)
    return {
        "applications": sorted(applications)[:MAX_OPTIONS],
        "departments": sorted(departments)[:MAX_OPTIONS],
    }


# --------------------------------------------------------------------------------------------------
# My reviews
# --------------------------------------------------------------------------------------------------

MY_REVIEW_STATUSES = (CampaignStatus.ACTIVE, CampaignStatus.REMEDIATING, CampaignStatus.COMPLETED)


@dataclass
class MyReview:
    campaign: Campaign
    total: int
    decided: int
    signed_off: int

    @property
    def open(self) -> int:
        return self.total - self.decided

    @property
    def is_signed_off(self) -> bool:
        return self.total > 0 and self.signed_off == self.total

    @property
    def percent(self) -> int:
        return round(100 * self.decided / self.total) if self.total else 0

    @property
    def percent_class(self) -> str:
        return f"w-{5 * round(self.percent / 5)}"


def my_reviews(*, membership: Membership, limit: int = 100) -> list[MyReview]:
    """Campaigns with items assigned to the member, active ones first (soonest due first), then completed
    ones, newest first. Two queries whatever the number of campaigns."""
    campaigns = list(
        Campaign.objects.filter(status__in=MY_REVIEW_STATUSES).order_by("-created_at")[: limit * 5]
    )
    if not campaigns:
        return []
    rows = (
        ReviewItem.objects.filter(campaign_id__in=[c.pk for c in campaigns], reviewer_id=membership.pk)
        .values("campaign_id")
        .annotate(
            total=Count("id"),
            decided=Count("id", filter=~Q(decision="")),
            signed_off=Count("id", filter=Q(signed_off_at__isnull=False)),
        )
    )
    counts = {r["campaign_id"]: r for r in rows}
    result = [
        MyReview(
            campaign=c,
            total=counts[c.pk]["total"],
            decided=counts[c.pk]["decided"],
            signed_off=counts[c.pk]["signed_off"],
        )
        for c in campaigns
        if c.pk in counts
    ]
    result.sort(
        key=lambda r: (
            r.campaign.status != CampaignStatus.ACTIVE,
            r.is_signed_off,
            r.campaign.due_date.toordinal() if r.campaign.status == CampaignStatus.ACTIVE else 0,
            -r.campaign.created_at.timestamp(),
        )
    )
    return result[:limit]


def next_open_review(*, membership: Membership, exclude: Campaign | None = None) -> MyReview | None:
    """The member's next active review with undecided items (soonest due first), for "what next" links."""
    for review in my_reviews(membership=membership, limit=20):
        if review.campaign.status == CampaignStatus.ACTIVE and review.open and review.campaign != exclude:
            return review
    return None
