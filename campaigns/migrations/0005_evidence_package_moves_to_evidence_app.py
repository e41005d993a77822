from django.db import migrations


class Migration(migrations.Migration):
    """EvidencePackage now belongs to the evidence app. Only Django's model state moves; the table
    campaigns_evidencepackage stays where it is (the evidence model names it in db_table)."""

    dependencies = [
        ("campaigns", "0004_campaign_decision_count"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="EvidencePackage")],
            database_operations=[],
        ),
    ]
