"""What the campaign pages show of notifications and scheduling."""

import pytest

from campaigns.models import CampaignStatus
from campaigns.scheduling import NO_APPLICATIONS_MATCHED
from notifications import hooks
from thalian.tenancy import scopes_disabled

from ..factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_campaign_page_has_send_reminder_on_progress_rows_and_the_log(
    org, campaign, people, client_for, mailbox
):
    hooks.notify_reviewers_assigned(campaign=campaign)
    page = client_for(people["admin"]).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    remind = f"/o/acme/campaigns/{campaign.pk}/remind/"
    assert page.count(f'action="{remind}"') == 4  # rita, sam; GitHub, Salesforce (done@ has nothing pending)
    assert 'name="application" value="Salesforce"' in page
    assert f'name="reviewer" value="{people["rita"].pk}"' in page
    assert "Notifications" in page and page.count("Review assigned") >= 3


def test_campaign_page_hides_send_reminder_from_roles_that_cannot_manage(org, campaign, people, client_for):
    page = client_for(people["viewer"]).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "Send reminder" not in page


def test_archived_occurrence_shows_the_reason(org, people, client_for):
    with scopes_disabled():
        archived = CampaignFactory(
            organization=org,
            title="Monthly review",
            status=CampaignStatus.ARCHIVED,
            archived_reason=NO_APPLICATIONS_MATCHED,
        )
    client = client_for(people["admin"])
    assert "no applications matched" in client.get("/o/acme/campaigns/?tab=archived").content.decode()
    assert (
        "This occurrence was skipped: no applications matched."
        in client.get(f"/o/acme/campaigns/{archived.pk}/").content.decode()
    )
    assert client.get("/o/acme/campaigns/?tab=cancelled").status_code == 200
    assert client.get("/o/acme/campaigns/?tab=scheduled").status_code == 200
