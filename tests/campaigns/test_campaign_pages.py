# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Campaign pages: list tabs, wizard and live preview, campaign page, launch progress, actions, access rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ReviewItem
from thalian.models import PLAN_REQUIRED_MESSAGE
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..factories import MembershipFactory, UserFactory
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db

ORG = "/o/acme/campaigns/"


def wizard_data(**overrides):
    data = {
        "title": "Browser review",
        "due_date": (timezone.localdate() + dt.timedelta(days=7)).isoformat(),
        "applications": ["GitHub"],
        "reviewer_strategy": "application_owner",
        "fallback_reviewer": "fallback@acme.test",
        "reason_required": "on",
        "default_outcome": "none",
        "reviewers": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_list_has_status_tabs_with_counts(inventory, client_for, launched, make_campaign,
                                          django_assert_max_num_queries):
    launched(title="Live one")
    make_campaign(title="Draft one")
    client = client_for(inventory.admin)
    page = client.get(ORG).content.decode()
    for label in ("Active", "Scheduled", "Completed", "Archived", "Cancelled", "Draft"):
        assert f">{label} <span" in page
    assert "Live one" in page and "Draft one" not in page
    assert "0 of 8 decided" in page
    drafts = client.get(ORG, {"tab": "draft"}).content.decode()
    assert "Draft one" in drafts and "Live one" not in drafts
    assert client.get(ORG, {"tab": "nonsense"}).status_code == 404
    with django_assert_max_num_queries(20) as few:
        client.get(ORG)
    for n in range(5):
        launched(title=f"Another {n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert "Another 4" in client.get(ORG).content.decode()


def test_wizard_creates_a_draft_and_shows_its_preview(inventory, client_for):
    client = client_for(inventory.admin)
    page = client.get(f"{ORG}new/").content.decode()
    assert "Non-human identities only" in page and "AI agents only" in page
    response = client.post(f"{ORG}new/", wizard_data())
    with scopes_disabled():
        campaign = Campaign.objects.get(title="Browser review")
    assert response.status_code == 302 and response["Location"].endswith(f"/campaigns/{campaign.pk}/")
    assert campaign.status == CampaignStatus.DRAFT and campaign.scope["applications"] == ["GitHub"]
    detail = client.get(response["Location"]).content.decode()
    assert "Items if launched now" in detail and "Launch now" in detail


def test_wizard_errors_name_the_field_and_create_nothing(inventory, client_for):
    client = client_for(inventory.admin)
    response = client.post(f"{ORG}new/", wizard_data(reviewer_strategy="members", reviewers="GitHub: nobody@acme.test"))
    assert response.status_code == 200
    assert "nobody@acme.test is not a member of this organization" in response.content.decode()
    response = client.post(f"{ORG}new/", wizard_data(title=""))
    assert "This field is required" in response.content.decode()
    with scopes_disabled():
        assert Campaign.objects.count() == 0


def test_live_preview_counts_applications_identities_and_items(inventory, client_for):
    client = client_for(inventory.admin)
    response = client.post(f"{ORG}preview/", {"preset": "non_human"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert 'data-preview="applications">2<' in page
    assert 'data-preview="identities">2<' in page
    assert 'data-preview="items">2<' in page
    assert "<html" not in page
    everything = client.post(f"{ORG}preview/", {}, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-preview="items">8<' in everything
    assert "Slack" in everything and "never loaded" in everything


def test_create_and_launch_from_the_wizard(inventory, client_for, django_capture_on_commit_callbacks):
    client = client_for(inventory.admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{ORG}new/", {**wizard_data(), "launch": "1"})
    with scopes_disabled():
        campaign = Campaign.objects.get()
    assert campaign.status == CampaignStatus.ACTIVE and campaign.item_count == 4
    page = client.get(response["Location"]).content.decode()
    assert 'data-progress="total">4<' in page


def test_stale_data_blocks_launch_and_admin_overrides_on_the_page(inventory, make_campaign, client_for,
                                                                  django_capture_on_commit_callbacks):
    campaign = make_campaign()
    analyst_page = client_for(inventory.mia_member).get(f"{ORG}{campaign.pk}/").content.decode()
    assert "Data freshness check" in analyst_page and "only an admin can launch anyway" in analyst_page
    assert "Launch anyway" not in analyst_page
    client = client_for(inventory.admin)
    page = client.get(f"{ORG}{campaign.pk}/").content.decode()
    assert "Slack" in page and "Launch anyway" in page
    blocked = client.post(f"{ORG}{campaign.pk}/launch/", {}, follow=True).content.decode()
    assert "older than 7 days or was never loaded: Slack" in blocked
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{ORG}{campaign.pk}/launch/", {"freshness_override_reason": "Uploaded by hand"})
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE
    assert campaign.freshness_override_reason == "Uploaded by hand"
    for who in (inventory.admin, inventory.mia_member):
        launched_page = client_for(who).get(f"{ORG}{campaign.pk}/").content.decode()
        assert "Launched on stale data" in launched_page
        assert "admin@acme.test overrode the data freshness check" in launched_page
        assert "Reason: Uploaded by hand" in launched_page and "Slack (never loaded)" in launched_page


def test_launching_page_polls_progress_then_refreshes(inventory, make_campaign, client_for):
    campaign = make_campaign(scope={"applications": ["GitHub"]})
    client = client_for(inventory.admin)
    client.post(f"{ORG}{campaign.pk}/launch/")  # the snapshot task waits for the commit that never comes here
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.LAUNCHING
    page = client.get(f"{ORG}{campaign.pk}/").content.decode()
    assert "Taking the snapshot" in page and 'hx-trigger="every 1s"' in page
    fragment = client.get(f"{ORG}{campaign.pk}/launch/status/", HTTP_HX_REQUEST="true")
    assert "Taking the snapshot" in fragment.content.decode() and "<html" not in fragment.content.decode()
    with scopes_disabled():
        Campaign.unscoped.filter(pk=campaign.pk).update(status=CampaignStatus.ACTIVE, snapshot_at=timezone.now())
    done = client.get(f"{ORG}{campaign.pk}/launch/status/", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"


def test_campaign_page_shows_progress_breakdown_and_tables(inventory, launched, client_for):
    campaign = launched()
    with scopes_disabled():
        ReviewItem.unscoped.filter(campaign=campaign, application_name="Salesforce").update(decision="revoke")
    page = client_for(inventory.admin).get(f"{ORG}{campaign.pk}/").content.decode()
    assert 'data-progress="decided">2<' in page and 'data-progress="total">8<' in page
    assert 'data-progress="revoke">2<' in page and 'data-progress="pending">6<' in page
    assert "bar-fill revoke w-25" in page
    assert "Progress per application" in page and "Progress and activity per reviewer" in page
    assert "owner@acme.test" in page and "fallback@acme.test" in page
    assert "Reassign items" in page and "Close campaign" in page and "Cancel campaign" in page


def test_cancel_close_and_reassign_from_the_page(inventory, launched, client_for):
    client = client_for(inventory.admin)
    campaign = launched(default_outcome="approve")
    no_reason = client.post(f"{ORG}{campaign.pk}/cancel/", {"reason": ""}, follow=True).content.decode()
    assert "a reason is required to cancel a campaign" in no_reason
    client.post(f"{ORG}{campaign.pk}/reassign/", {"from_reviewer": str(inventory.fallback.pk),
                                                   "to_reviewer": str(inventory.mia_member.pk), "reason": ""})
    with scopes_disabled():
        assert ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.mia_member).count() == 5
    client.post(f"{ORG}{campaign.pk}/close/")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    other = launched()
    client.post(f"{ORG}{other.pk}/cancel/", {"reason": "Duplicate"})
    other.refresh_from_db()
    assert other.status == CampaignStatus.CANCELLED
    assert "Duplicate" in client.get(f"{ORG}{other.pk}/").content.decode()


def test_edit_is_refused_once_launched(inventory, launched, client_for):
    campaign = launched()
    response = client_for(inventory.admin).get(f"{ORG}{campaign.pk}/edit/", follow=True)
    assert "scope and reviewers are locked" in response.content.decode()


def test_outsider_gets_404_on_every_page(inventory, launched, outsider, client_for):
    campaign = launched()
    client = client_for(outsider)
    for url in (ORG, f"{ORG}new/", f"{ORG}{campaign.pk}/", f"{ORG}{campaign.pk}/edit/",
                f"{ORG}{campaign.pk}/launch/status/"):
        assert client.get(url).status_code == 404, url
    for url in (f"{ORG}preview/", f"{ORG}{campaign.pk}/launch/", f"{ORG}{campaign.pk}/cancel/",
                f"{ORG}{campaign.pk}/close/", f"{ORG}{campaign.pk}/reassign/"):
        assert client.post(url, {"reason": "x"}).status_code == 404, url
    # A campaign id of acme under the outsider's own organization is not found either.
    assert client.get(f"/o/globex/campaigns/{campaign.pk}/").status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR, Role.REVIEWER])
def test_roles_without_manage_permission_get_403(inventory, launched, member, client_for, role):
    campaign = launched()
    client = client_for(member(role))
    assert client.get(f"{ORG}new/").status_code == 403
    assert client.get(f"{ORG}{campaign.pk}/edit/").status_code == 403
    for url in (f"{ORG}preview/", f"{ORG}{campaign.pk}/launch/", f"{ORG}{campaign.pk}/cancel/",
                f"{ORG}{campaign.pk}/close/", f"{ORG}{campaign.pk}/reassign/"):
        assert client.post(url, {"reason": "x"}).status_code == 403, url
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE


def test_viewer_sees_the_campaign_read_only(inventory, launched, member, client_for):
    campaign = launched()
    page = client_for(member(Role.VIEWER)).get(f"{ORG}{campaign.pk}/").content.decode()
    assert 'data-progress="total">8<' in page
    assert "Close campaign" not in page and "Reassign items" not in page


def test_reviewer_sees_only_campaigns_with_their_items(inventory, launched, client_for):
    mine = launched()
    other = launched(scope={"applications": ["Salesforce"]})
    client = client_for(inventory.owner_member)
    listing = client.get(ORG).content.decode()
    assert listing.count("/campaigns/" + str(mine.pk)) == 1 and str(other.pk) not in listing
    assert client.get(f"{ORG}{mine.pk}/").status_code == 200
    assert client.get(f"{ORG}{other.pk}/").status_code == 404


def test_free_plan_pages_explain_the_plan(free_org, client_for):
    membership = MembershipFactory(user=UserFactory(email="admin@initech.test"), organization=free_org,
                                   role=Role.ADMIN)
    client = client_for(membership)
    for url in ("/o/initech/campaigns/", "/o/initech/campaigns/new/"):
        response = client.get(url)
        assert response.status_code == 403
        assert PLAN_REQUIRED_MESSAGE in response.content.decode()


def test_campaign_page_queries_do_not_grow_with_applications_and_reviewers(inventory, launched, member, client_for,
                                                                         django_assert_max_num_queries):
    from ..factories import ApplicationFactory, EntitlementFactory

    small = launched(scope={"applications": ["GitHub"]})
    client = client_for(inventory.admin)
    with django_assert_max_num_queries(40) as baseline:
        client.get(f"{ORG}{small.pk}/")
    for n in range(6):
        owner = member(Role.REVIEWER, email=f"owner{n}@acme.test")
        app = ApplicationFactory(organization=inventory.org, name=f"Extra {n}", owner_email=owner.user.email)
        EntitlementFactory(organization=inventory.org, identity=inventory.identities.ann, application=app)
    big = launched()
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        page = client.get(f"{ORG}{big.pk}/").content.decode()
    assert "Extra 5" in page and "owner5@acme.test" in page


def test_a_title_typed_with_line_breaks_is_saved_on_one_line(inventory, client_for):
    client_for(inventory.admin).post(f"{ORG}new/", {**wizard_data(), "title": "Q3\r\nreview"})
    with scopes_disabled():
        assert Campaign.objects.get().title == "Q3 review"
