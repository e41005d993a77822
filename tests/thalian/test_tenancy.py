import pytest

from entitlements.models import Identity
from tests.factories import IdentityFactory
from thalian.tenancy import ScopeError, assert_same_organization, scope, scopes_disabled


def test_tenant_query_without_an_organization_scope_fails_closed(org):
    IdentityFactory(organization=org)
    with pytest.raises(ScopeError, match="no organization scope"):
        list(Identity.objects.all())


def test_scope_shows_only_the_active_organizations_rows(org, other_org):
    mine = IdentityFactory(organization=org, email="a@acme.test")
    IdentityFactory(organization=other_org, email="b@globex.test")
    with scope(org):
        assert list(Identity.objects.values_list("email", flat=True)) == [mine.email]
    with scope(other_org):
        assert Identity.objects.filter(pk=mine.pk).first() is None


def test_queryset_built_in_scope_stays_bound_when_evaluated_later(org, other_org):
    IdentityFactory(organization=org, email="a@acme.test")
    IdentityFactory(organization=other_org, email="b@globex.test")
    with scope(org):
        lazy = Identity.objects.order_by("email")
    assert [i.email for i in lazy] == ["a@acme.test"]


def test_linking_objects_of_two_organizations_is_refused(org, other_org):
    with scopes_disabled():
        a = IdentityFactory(organization=org)
        b = IdentityFactory(organization=other_org)
    with pytest.raises(ScopeError, match="different organizations"):
        assert_same_organization(a, b)
    assert_same_organization(a, IdentityFactory(organization=org))


def _forced_database_error(**kwargs):
    from django.db import OperationalError

    raise OperationalError("server closed the connection unexpectedly")


@pytest.mark.django_db
def test_failed_api_request_leaves_no_organization_scope_behind(org, member, api_for, monkeypatch):
    from campaigns.models import Campaign
    from tests.campaigns.review_support import active_campaign, add_items
    from thalian.permissions import Role
    from thalian.tenancy import current_organization_id

    reviewer = member(Role.REVIEWER)
    campaign = active_campaign(org, title="Q3 access review")
    [item] = add_items(campaign, reviewer, 1)
    monkeypatch.setattr("campaigns.review_api.review_item_decide", _forced_database_error)
    api = api_for(reviewer)
    api.raise_request_exception = False
    response = api.post(
        f"/api/v1/orgs/acme/campaigns/{campaign.pk}/items/{item.pk}/decision/",
        {"decision": "approve", "reason": ""},
        format="json",
    )
    assert response.status_code == 500
    assert current_organization_id() is None
    with pytest.raises(ScopeError, match="no organization scope"):
        Campaign.objects.count()


@pytest.mark.django_db
def test_failed_page_request_leaves_no_organization_scope_behind(org, member, client_for, monkeypatch):
    from campaigns.models import Campaign
    from thalian.permissions import Role
    from thalian.tenancy import current_organization_id

    monkeypatch.setattr("campaigns.views.selectors.campaign_tab_counts", _forced_database_error)
    client = client_for(member(Role.ADMIN))
    client.raise_request_exception = False
    response = client.get("/o/acme/campaigns/")
    assert response.status_code == 500
    assert current_organization_id() is None
    with pytest.raises(ScopeError, match="no organization scope"):
        Campaign.objects.count()


def test_activating_a_scope_outside_a_request_is_refused(org):
    from thalian.tenancy import activate

    with pytest.raises(ScopeError, match="for requests"):
        activate(org)


def test_a_scope_for_no_organization_is_refused_rather_than_showing_every_organization(org, other_org):
    IdentityFactory(organization=org)
    IdentityFactory(organization=other_org)
    with pytest.raises(ScopeError, match="needs an organization"):
        with scope(None):
            list(Identity.objects.all())
    with pytest.raises(ScopeError, match="needs an organization"):
        with scope(organization_id=None):
            list(Identity.objects.all())


def test_a_scope_entered_inside_disabled_scoping_filters_again(org, other_org):
    IdentityFactory(organization=org, email="a@acme.test")
    IdentityFactory(organization=other_org, email="b@globex.test")
    with scopes_disabled():
        assert Identity.objects.count() == 2
        with scope(org):
            assert list(Identity.objects.values_list("email", flat=True)) == ["a@acme.test"]
        assert Identity.objects.count() == 2
