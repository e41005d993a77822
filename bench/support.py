"""Building blocks shared by the campaign benchmarks: a throw-away active campaign and its items generated
in PostgreSQL."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ReviewItem
from thalian.models import Organization


def bench_campaign(*, organization: Organization, title: str, rows: int, **extra) -> Campaign:
    """An active campaign due in 30 days whose snapshot holds ``rows`` items."""
    return Campaign.objects.create(
        organization=organization,
        title=title,
        due_date=dt.date.today() + dt.timedelta(days=30),
        status=CampaignStatus.ACTIVE,
        snapshot_at=timezone.now(),
        item_count=rows,
        **extra,
    )


def review_items_insert(*, campaign: Campaign, rows: int, generated: dict[str, tuple[str, list]]) -> None:
    """One INSERT ... SELECT over generate_series(1, rows) AS g. ``generated`` maps a field name to its SQL
    expression (placeholders ``%s``, a literal percent sign written ``%%``) and the parameters it takes; the
    fields it leaves out get NULL when nullable, otherwise their model default."""
    columns, expressions, params = [], [], []
    for f in ReviewItem._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(connection.ops.quote_name(f.column))
        if f.name == "organization":
            expressions.append("%s")
            params.append(campaign.organization_id)
        elif f.name == "campaign":
            expressions.append("%s")
            params.append(campaign.pk)
        elif f.name in generated:
            expression, values = generated[f.name]
            expressions.append(expression)
            params.extend(values)
        elif f.null:
            expressions.append("NULL")
        else:
            expressions.append("%s")
            params.append(f.get_db_prep_save(f.get_default(), connection))
    sql = (
        f"INSERT INTO {ReviewItem._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, rows])
