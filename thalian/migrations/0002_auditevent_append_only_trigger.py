"""Audit events are append-only in the database too (PostgreSQL): UPDATE and DELETE are refused.

Two exits, both narrow: deleting a user may clear `actor_id` (ON DELETE SET NULL keeps the recorded e-mail),
and deleting an organization may delete its events inside the transaction that set
`thalian.audit_purge` (thalian.services.organization_delete). On SQLite this migration does nothing.
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION thalian_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
           AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: UPDATE of thalian_auditevent % refused', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF coalesce(current_setting('thalian.audit_purge', true), '') = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of thalian_auditevent % refused', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS thalian_auditevent_append_only ON thalian_auditevent;
CREATE TRIGGER thalian_auditevent_append_only
    BEFORE UPDATE OR DELETE ON thalian_auditevent
    FOR EACH ROW EXECUTE FUNCTION thalian_auditevent_append_only();

"""

DROP = r"""
DROP TRIGGER IF EXISTS thalian_auditevent_append_only ON thalian_auditevent;
DROP FUNCTION IF EXISTS thalian_auditevent_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("thalian", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
