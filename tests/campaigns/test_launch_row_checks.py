# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""The snapshot's inserts skip PostgreSQL's per-row foreign key checks and the per-statement count trigger,
doing their work set-based instead; nothing a user sees changes, and a trigger the snapshot does not know
keeps the row-by-row path."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from campaigns import launch, selectors
from campaigns.models import CampaignDecisionCount, ReviewItem
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="session_replication_role is PostgreSQL's"),
]


def _replication_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return cursor.fetchone()[0]


def _dangling_references() -> int:
    """Items whose foreign keys point at nothing (what the skipped checks would have refused)."""
    table = ReviewItem._meta.db_table
    checks = " OR ".join(
        f"(t.{f.column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {f.related_model._meta.db_table} p "
        f"WHERE p.{f.target_field.column} = t.{f.column}))"
        for f in ReviewItem._meta.concrete_fields
        if f.is_relation
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} t WHERE {checks}")
        return cursor.fetchone()[0]


def test_the_migrated_schema_has_only_triggers_the_snapshot_replaces():
    assert launch.snapshot_skippable_triggers_only()


def test_launch_counts_every_item_as_pending_and_restores_row_triggers(inventory, launched):
    campaign = launched()

    assert _replication_role() == "origin"
    assert campaign.item_count == 8
    with scope(inventory.org):
        progress = selectors.campaign_progress(campaign=campaign)
        counts = dict(CampaignDecisionCount.objects.filter(campaign=campaign).values_list("decision", "count"))
    assert (progress.total, progress.pending, progress.decided) == (8, 8, 0)
    assert counts == {"": 8}
    assert _dangling_references() == 0


def test_decisions_after_launch_still_move_the_counts(inventory, launched):
    from campaigns.decisions import review_item_decide

    campaign = launched()
    with scope(inventory.org):
        item = ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.fallback).first()
        review_item_decide(item=item, actor=inventory.fallback, decision="approve", reason="Still needed")
        counts = dict(CampaignDecisionCount.objects.filter(campaign=campaign).values_list("decision", "count"))
    assert counts == {"": 7, "approve": 1}


def test_an_insert_trigger_the_snapshot_does_not_know_keeps_row_by_row_inserts(inventory, launched):
    table = ReviewItem._meta.db_table
    with connection.cursor() as cursor:
        # Rolled back with the test's transaction.
        cursor.execute("CREATE TEMP TABLE seen_items (id bigint)")
        cursor.execute(
            "CREATE FUNCTION pg_temp.item_seen() RETURNS trigger AS $$ BEGIN "
            "INSERT INTO seen_items VALUES (NEW.id); RETURN NULL; END; $$ LANGUAGE plpgsql"
        )
        cursor.execute(f"CREATE TRIGGER item_seen AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION pg_temp.item_seen()")

    assert not launch.snapshot_skippable_triggers_only()
    campaign = launched()

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM seen_items")
        assert cursor.fetchone()[0] == campaign.item_count == 8
    with scopes_disabled():
        assert dict(CampaignDecisionCount.objects.filter(campaign=campaign).values_list("decision", "count")) == {"": 8}


def test_a_role_that_may_not_skip_row_triggers_launches_the_same_campaign_and_says_what_to_grant(
    inventory, launched, caplog
):
    role = f"thalian_app_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")

    campaign = launched()

    assert "Campaign snapshot with per-row foreign key checks" in caplog.text
    assert "GRANT SET ON PARAMETER session_replication_role" in caplog.text
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    with scopes_disabled():
        assert dict(CampaignDecisionCount.objects.filter(campaign=campaign).values_list("decision", "count")) == {"": 8}
        assert ReviewItem.objects.filter(campaign=campaign).count() == 8
