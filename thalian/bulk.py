"""Set-based writes the ORM spells slowly: many rows, each with its own values, in one statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections


def rows_update(
    model,
    *,
    organization_id: int,
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """UPDATE the rows of ``model`` whose id is each row's first value, setting the fields ``columns`` to the
    row's other values (text or numbers) and the fields of ``constants`` to theirs, in one statement limited to
    ``organization_id``. ``QuerySet.bulk_update`` builds a ``CASE WHEN id = ...`` per field and row in Python,
    which costs more than the database's work for a batch; this sends the values once, as a ``VALUES`` list."""
    if not rows:
        return 0
    database = connections[model.objects.db]
    quote = database.ops.quote_name
    meta = model._meta
    names = ["id", *(meta.get_field(name).column for name in columns)]
    alias = [f"v{n}" for n in range(len(names))]
    assignments = [f"{quote(column)} = v.{a}" for column, a in zip(names[1:], alias[1:], strict=True)]
    params: list[Any] = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"each row needs {len(names)} values (the id, then {', '.join(columns)})")
        params.extend(row)
    for name, value in (constants or {}).items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, database))
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(rows))
    table = quote(meta.db_table)
    with database.cursor() as cursor:
        cursor.execute(
            f"WITH v ({', '.join(alias)}) AS (VALUES {placeholders}) "
            f"UPDATE {table} SET {', '.join(assignments)} FROM v "
            f"WHERE {table}.{quote(meta.pk.column)} = v.v0 AND {table}.{quote('organization_id')} = %s",
            [*params, organization_id],
        )
        return cursor.rowcount
