"""Which review-item index each list, filter, sort, API and selector query uses, proven with EXPLAIN on
PostgreSQL (docs/campaigns.md, "Review-item indexes").

A launch writes one entry per item into every index that is not partial, so the table keeps only indexes a
query needs. Each test runs the real selector or service, captures its SQL and asks PostgreSQL for the plan
with sequential scans priced out (`enable_seqscan = off`): the plan must read review items through the named
index with an index condition, never by scanning the table. Dropping or reshaping an index a query relies
on makes its test fail; a new index that every launch pays for fails the inventory test until it is
documented there.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.support import review_items_insert
from campaigns import exceptions, remediation, review_selectors, selectors
from campaigns.models import Campaign, CampaignStatus, GuestReviewer, ReviewItem
from entitlements.models import Entitlement
from evidence.items_csv import campaign_items_for_export
from itsm.selectors import remediation_queue
from notifications.selectors import pending_counts_by_reviewer
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..factories import ApplicationFactory, CampaignFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="plans are PostgreSQL's"),
]

TABLE = ReviewItem._meta.db_table
ITEMS_PER_CAMPAIGN = 1000
# Foreign keys whose parent rows are deleted (with an organization; a member removed): PostgreSQL checks
# each deleted parent by this column alone, which no organization-leading index can answer.
PARENT_DELETE_COLUMNS = {"campaign_id", "entitlement_id", "application_id", "reviewer_id"}
# What a launch writes into, one entry per item: the primary key, the (organization, campaign, ...)
# composites and those foreign key indexes. Everything else must be partial on a condition no freshly
# launched item meets.
LAUNCH_INDEXES = {
    f"{TABLE}_pkey",
    "item_org_campaign_id",
    "item_org_campaign_reviewer",
    "item_org_campaign_decision",
    "item_org_campaign_app",
    "item_org_campaign_dept",
}

CAMPAIGN_COMPOSITES = tuple(sorted(LAUNCH_INDEXES - {f"{TABLE}_pkey"}))


def _foreign_key_index_names() -> dict[str, str]:
    """{index name: "fk:<column>"} of the single-column foreign key indexes."""
    names = {}
    with connection.cursor() as cursor:
        for column in PARENT_DELETE_COLUMNS:
            cursor.execute(
                "SELECT i.relname FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid "
                "JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_attribute a ON a.attrelid = t.oid "
                "AND a.attnum = ix.indkey[0] WHERE t.relname = %s AND a.attname = %s AND ix.indnatts = 1",
                [TABLE, column],
            )
            names.update({row[0]: f"fk:{column}" for row in cursor.fetchall()})
    return names


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _explain(sql: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        raw = cursor.fetchone()[0]
    plan = json.loads(raw) if isinstance(raw, str) else raw
    return list(_plan_nodes(plan[0]["Plan"]))


def _item_reads(sql: str) -> tuple[set[str], list[str]]:
    """(indexes read with an index condition, how else the items table is read) in the plan of `sql`."""
    indexes, other = set(), []
    for node in _explain(sql):
        name = node.get("Index Name", "")
        on_items = node.get("Relation Name") == TABLE or name.startswith("item_") or name == f"{TABLE}_pkey"
        if not on_items:
            continue
        if name and "Index Cond" in node:
            indexes.add(name)
        elif name and node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
            other.append(f"{node['Node Type']} of all of {name}")
        elif node["Node Type"] in ("Seq Scan", "Sample Scan", "Tid Scan"):
            other.append(node["Node Type"])
    return indexes, other


def assert_uses(run, *expected: str, full_scan_ok: tuple[str, ...] = ()) -> None:
    """Run `run()`, and check every statement on review items it sent reads them through an index of
    `expected` with an index condition (or, for `full_scan_ok`, through that index read whole: a partial
    index holding few rows)."""
    with CaptureQueriesContext(connection) as captured:
        run()
    statements = [q["sql"] for q in captured.captured_queries if TABLE in q["sql"]]
    assert statements, "the query under test sent no statement on review items"
    used: set[str] = set()
    aliases = _foreign_key_index_names()
    for sql in statements:
        indexes, other = _item_reads(sql)
        indexes = {aliases.get(name, name) for name in indexes}
        whole = {name for name in full_scan_ok if any(o.endswith(f"of all of {name}") for o in other)}
        other = [o for o in other if not any(o.endswith(f"of all of {name}") for name in whole)]
        assert not other, f"reads review items without an index condition ({other}):\n{sql}"
        used |= indexes | whole
    assert used & set(expected), f"expected one of {expected}, the plans used {sorted(used)}"


@pytest.fixture
def world(org, other_org, member):
    """Eleven campaigns of acme and one of globex, ITEMS_PER_CAMPAIGN items each: 20 applications, 10
    departments, half the items with the reviewer, a tenth revoked, a tenth exceptions, some for a guest.
    The campaign under test is the oldest, so a plan walking the primary key from either end would have
    to pass the others."""
    admin = member(Role.ADMIN)
    reviewer = member(Role.REVIEWER, email="rita@acme.test")
    outsider = member(Role.REVIEWER, organization=other_org, email="otto@globex.test")
    apps = {}
    for organization in (org, other_org):
        with scope(organization):
            apps[organization.pk] = ApplicationFactory(organization=organization, name="App 1")
    campaigns = []
    with scopes_disabled():
        for organization, who in [(org, reviewer)] * 11 + [(other_org, outsider)]:
            campaign = CampaignFactory(organization=organization, status=CampaignStatus.ACTIVE,
                                       snapshot_at=timezone.now(), item_count=ITEMS_PER_CAMPAIGN)
            guest = GuestReviewer.objects.create(organization=organization, campaign=campaign, email="g@x.test")
            decision = ("CASE g %% 10 WHEN 0 THEN 'revoke' WHEN 1 THEN 'exception' WHEN 2 THEN 'approve' "
                        "ELSE '' END")
            review_items_insert(campaign=campaign, rows=ITEMS_PER_CAMPAIGN, generated={
                "identity_email": ("'person' || g || '@corp.test'", []),
                "identity_kind": ("'human'", []),
                "identity_status": ("'active'", []),
                "identity_department": ("'Dept ' || (g %% 10)", []),
                "application_name": ("'App ' || (g %% 20)", []),
                "application": ("CASE WHEN g %% 20 = 1 THEN %s END", [apps[organization.pk].pk]),
                "role": ("'member'", []),
                "recommendation": ("'approve'", []),
                "reviewer": ("CASE WHEN g %% 2 = 0 THEN %s END", [who.pk]),
                "reviewer_email": ("CASE WHEN g %% 2 = 0 THEN %s ELSE '' END", [who.user.email]),
                "guest": ("CASE WHEN g %% 97 = 0 THEN %s END", [guest.pk]),
                "decision": (decision, []),
                "remediation_status": ("CASE WHEN g %% 10 = 0 THEN 'pending' ELSE '' END", []),
                "exception_expires_on": ("CASE WHEN g %% 10 = 1 THEN current_date + (g %% 30) - 10 END", []),
            })
            campaigns.append(campaign)
        first = ReviewItem.objects.filter(campaign=campaigns[0], decision="exception").order_by("id").first()
        ReviewItem.objects.filter(campaign=campaigns[1], pk__in=ReviewItem.objects.filter(
            campaign=campaigns[1]).order_by("id").values("pk")[:5]).update(renewal_of=first)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
        cursor.execute("SET LOCAL enable_seqscan = off")
    campaign = Campaign.unscoped.select_related("organization").get(pk=campaigns[0].pk)
    return type("World", (), {"org": org, "admin": admin, "reviewer": reviewer, "campaign": campaign,
                              "guest": GuestReviewer.unscoped.get(campaign=campaign)})


def _page(world, membership, *, sort="id", flt=None, second=False):
    def run():
        with scope(world.org):
            items = review_selectors.review_items_visible(campaign=world.campaign, membership=membership)
            if flt:
                items = review_selectors.review_items_filter(
                    items, review_selectors.item_filter_parse(flt), membership=membership
                )
            page = review_selectors.review_items_page(items, sort=sort)
            if second:
                review_selectors.review_items_page(items, sort=sort, cursor=page.next_cursor)

    return run


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("id", "item_org_campaign_id"),
        ("-id", "item_org_campaign_id"),
        ("application", "item_org_campaign_app"),
        ("-application", "item_org_campaign_app"),
        ("department", "item_org_campaign_dept"),
        ("-department", "item_org_campaign_dept"),
        ("decision", "item_org_campaign_decision"),
        ("-decision", "item_org_campaign_decision"),
    ],
)
def test_every_sort_of_the_items_list_pages_through_its_index(world, sort, index):
    assert_uses(_page(world, world.admin, sort=sort, second=True), index)


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        ({"decision": "pending"}, "item_org_campaign_decision"),
        ({"decision": "revoke"}, "item_org_campaign_decision"),
        ({"application": "App 3"}, "item_org_campaign_app"),
        ({"department": "Dept 4"}, "item_org_campaign_dept"),
        # Filters without an index of their own walk the campaign in id order until a page is full.
        ({"finding": "dormant"}, ("item_org_campaign_id", "fk:campaign_id")),
        ({"search": "person12"}, ("item_org_campaign_id", "fk:campaign_id")),
        ({"reviewer": "me"}, ("item_org_campaign_reviewer", "fk:reviewer_id")),
    ],
)
def test_items_list_filters_use_an_index(world, flt, index):
    assert_uses(_page(world, world.admin, flt=flt, second=True), *([index] if isinstance(index, str) else index))


def test_a_reviewer_pages_through_their_own_items_by_the_reviewer_index(world):
    assert_uses(_page(world, world.reviewer, second=True), "item_org_campaign_reviewer", "fk:reviewer_id")


def test_one_item_is_read_by_its_primary_key(world):
    with scopes_disabled():
        item_id = ReviewItem.objects.filter(campaign=world.campaign).values_list("pk", flat=True).first()

    def run():
        with scope(world.org):
            review_selectors.review_item_get(membership=world.admin, campaign=world.campaign, item_id=item_id)

    assert_uses(run, f"{TABLE}_pkey", "item_org_campaign_id")


def test_filter_options_are_loose_index_scans_of_application_and_department(world):
    def run():
        with scope(world.org):
            review_selectors.review_filter_options(campaign=world.campaign, membership=world.admin)

    assert_uses(run, "item_org_campaign_app")
    assert_uses(run_without_cache(run), "item_org_campaign_dept")


def run_without_cache(run):
    def again():
        from django.core.cache import cache

        cache.clear()
        review_selectors._SNAPSHOT_OPTIONS.clear()  # the snapshot's options are also kept per process
        run()

    return again


def test_my_reviews_and_the_reviewers_campaign_list_probe_the_reviewer_index(world):
    def mine():
        with scope(world.org):
            review_selectors.my_reviews(membership=world.reviewer)

    def campaigns():
        with scope(world.org):
            list(selectors.campaigns_visible(membership=world.reviewer))

    def access():
        with scope(world.org):
            selectors.campaign_access(membership=world.reviewer, campaign_id=world.campaign.pk)

    for run in (mine, campaigns, access):
        assert_uses(run, "item_org_campaign_reviewer", "fk:reviewer_id")


def test_campaign_progress_by_application_and_reviewer_read_the_campaign_indexes(world):
    def by_app():
        with scope(world.org):
            selectors.campaign_progress_by_application(campaign=world.campaign)

    def by_reviewer():
        with scope(world.org):
            selectors.campaign_progress_by_reviewer(campaign=world.campaign)

    # A whole-campaign aggregate reads one campaign's range of any (organization, campaign, ...) composite.
    assert_uses(by_app, *CAMPAIGN_COMPOSITES)
    assert_uses(by_reviewer, *CAMPAIGN_COMPOSITES)


def test_pending_reminders_count_by_reviewer_from_an_index(world):
    def run():
        with scope(world.org):
            pending_counts_by_reviewer(campaign=world.campaign)

    assert_uses(run, "item_org_campaign_decision", "item_org_campaign_reviewer")


def test_evidence_export_reads_the_campaign_in_id_order(world):
    def run():
        with scope(world.org):
            list(campaign_items_for_export(campaign=world.campaign)[:100])

    assert_uses(run, "item_org_campaign_id")


def test_removal_verification_after_an_import_reads_revoked_items_by_application(world):
    app_id = ReviewItem.unscoped.filter(campaign=world.campaign, application__isnull=False).values_list(
        "application_id", flat=True
    ).first()

    def run():
        with scope(world.org):
            remediation.review_items_remediation_verify(
                application_ids=[app_id], present_entitlements=Entitlement.objects.filter(present=True),
                now=timezone.now(),
            )

    assert_uses(run, "item_org_revoked_app")


def test_remediation_figures_of_a_campaign_read_its_revoked_items(world):
    def run():
        with scope(world.org):
            remediation.campaign_remediation_progress(campaign=world.campaign)
            list(remediation.open_removals(world.campaign.pk)[:10])

    assert_uses(run, "item_org_campaign_decision")


def test_the_remediation_queue_reads_revoked_items_only(world):
    def run():
        with scope(world.org):
            list(remediation_queue(membership=world.admin, state="pending")[:50])

    assert_uses(run, "item_org_revoked_app", "item_org_campaign_decision",
                full_scan_ok=("item_org_revoked_app",))


def test_the_exceptions_list_and_the_renewal_gatherer_read_exceptions_by_expiry(world):
    def listed():
        with scope(world.org):
            list(exceptions.exceptions_list(status="expiring")[:50])

    def expired():
        with scope(world.org):
            list(exceptions._exceptions().filter(exception_expires_on__lt=timezone.localdate(),
                                                 renewals__isnull=True)[:50])

    assert_uses(listed, "item_org_exception_expiry")
    # The anti-join reads the renewals through their partial index: it holds renewal items only.
    assert_uses(expired, "item_org_exception_expiry", full_scan_ok=("item_org_renewal_of",))


def test_a_guests_portal_lists_their_items_by_the_guest_index(world):
    def run():
        with scope(world.org):
            list(ReviewItem.objects.filter(campaign=world.campaign, guest=world.guest)
                 .order_by("identity_email", "application_name", "id"))
            selectors.campaign_guests(campaign=world.campaign)

    assert_uses(run, "item_org_guest")


def test_every_lookup_index_leads_with_the_organization_and_a_launch_writes_only_the_documented_ones(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, ix.indpred IS NOT NULL, a.attname FROM pg_index ix "
            "JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ix.indkey[0] WHERE t.relname = %s",
            [TABLE],
        )
        rows = cursor.fetchall()
    foreign_key_indexes = _foreign_key_index_names()
    assert len(foreign_key_indexes) == len(PARENT_DELETE_COLUMNS)
    not_partial = {name for name, partial, _first in rows if not partial}
    assert not_partial == LAUNCH_INDEXES | set(foreign_key_indexes), (
        "every launch writes each item into these; document a new one in docs/campaigns.md and here"
    )
    assert {
        (name, first) for name, _partial, first in rows
        if name != f"{TABLE}_pkey" and name not in foreign_key_indexes and first != "organization_id"
    } == set()


def test_a_freshly_launched_item_meets_no_partial_index_condition(db):
    """The partial indexes' conditions are false for what a snapshot writes (undecided, no guest, no
    renewal), so a launch never touches them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(ix.indpred, ix.indrelid) FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid "
            "WHERE t.relname = %s AND ix.indpred IS NOT NULL",
            [TABLE],
        )
        predicates = [row[0] for row in cursor.fetchall()]
    assert len(predicates) == 4
    for predicate in predicates:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT NULL::bigint AS guest_id, NULL::bigint AS renewal_of_id, "
                f"''::varchar AS decision) {TABLE} WHERE {predicate}"
            )
            assert cursor.fetchone()[0] == 0, predicate
