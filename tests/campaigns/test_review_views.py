import re
import uuid

import pytest
from django.urls import reverse

from campaigns.decisions import review_item_decide
from campaigns.models import CampaignStatus, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .review_support import active_campaign, add_items, assert_chain_intact, events_of, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER)


@pytest.fixture
def other_reviewer(member):
    return member(Role.REVIEWER, email="other.reviewer@acme.test")


@pytest.fixture
def campaign(org):
    return active_campaign(org, title="Q3 access review")


def items_url(campaign, **params):
    url = reverse("review_items", args=[campaign.organization.slug, campaign.pk])
    if params:
        from urllib.parse import urlencode

        url += "?" + urlencode(params)
    return url


def item_url(item, name="review_item_detail"):
    return reverse(name, args=[item.organization.slug, item.campaign_id, item.pk])


def shown_item_ids(response) -> set[int]:
    return {int(i) for i in re.findall(r'<tr id="item-(\d+)"', response.content.decode())}


# ---------------------------------------------------------------------------------------------------
# My reviews
# ---------------------------------------------------------------------------------------------------


def test_my_reviews_lists_campaigns_with_open_item_counts(org, campaign, reviewer, other_reviewer, client_for):
    items = add_items(campaign, reviewer, 3)
    add_items(campaign, other_reviewer, 5)
    elsewhere = active_campaign(org, title="Only for others")
    add_items(elsewhere, other_reviewer, 2)
    with scope(org):
        review_item_decide(item=items[0], actor=reviewer, decision="approve")
    response = client_for(reviewer).get(reverse("my_reviews", args=[org.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Q3 access review" in body and "2 of 3" in body
    assert "Only for others" not in body


def test_my_reviews_is_empty_for_a_member_without_items(org, campaign, member, client_for):
    response = client_for(member(Role.VIEWER)).get(reverse("my_reviews", args=[org.slug]))
    assert response.status_code == 200
    assert "No review items are assigned to you" in response.content.decode()


def test_my_reviews_outsider_gets_404_and_free_plan_gets_403(org, free_org, outsider, member, client_for):
    assert client_for(outsider).get(reverse("my_reviews", args=[org.slug])).status_code == 404
    free_member = member(Role.ADMIN, organization=free_org)
    assert client_for(free_member).get(reverse("my_reviews", args=[free_org.slug])).status_code == 403


# ---------------------------------------------------------------------------------------------------
# Item table: visibility, filters, sorting, pages
# ---------------------------------------------------------------------------------------------------


def test_reviewer_sees_only_items_assigned_to_them(campaign, reviewer, other_reviewer, client_for):
    mine = add_items(campaign, reviewer, 3)
    theirs = add_items(campaign, other_reviewer, 2)
    client = client_for(reviewer)
    response = client.get(items_url(campaign))
    assert response.status_code == 200
    assert shown_item_ids(response) == {i.pk for i in mine}
    assert client.get(item_url(theirs[0])).status_code == 404
    response = client.post(item_url(theirs[0], "review_item_decide"), {"decision": "approve"})
    assert response.status_code == 404
    assert fresh(theirs[0]).decision == ""


def test_reviewer_without_items_in_a_campaign_gets_404(campaign, reviewer, other_reviewer, client_for):
    add_items(campaign, other_reviewer, 2)
    assert client_for(reviewer).get(items_url(campaign)).status_code == 404


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SECURITY_ANALYST, Role.AUDITOR, Role.VIEWER])
def test_other_roles_see_every_item(campaign, reviewer, other_reviewer, member, client_for, role):
    items = add_items(campaign, reviewer, 2) + add_items(campaign, other_reviewer, 2)
    response = client_for(member(role)).get(items_url(campaign))
    assert shown_item_ids(response) == {i.pk for i in items}


def test_viewer_sees_items_without_decision_controls(campaign, reviewer, member, client_for):
    add_items(campaign, reviewer, 1)
    viewer = client_for(member(Role.VIEWER))
    body = viewer.get(items_url(campaign)).content.decode()
    assert 'class="decide-form"' not in body and "Sign off" not in body
    bar = viewer.get(reverse("review_progress", args=[campaign.organization.slug, campaign.pk]), {"department": ""},
                     headers={"HX-Request": "true"}).content.decode()
    assert "<strong data-matching>1</strong> item matches" in bar
    assert "Approve all" not in bar and "Sign off" not in bar and "selected" not in bar


def test_filters_narrow_the_table(campaign, reviewer, client_for):
    sales = add_items(campaign, reviewer, 2, identity_department="Sales")
    add_items(campaign, reviewer, 2, identity_department="Finance")
    slack = add_items(campaign, reviewer, 1, application_name="Slack", identity_department="Finance")
    bot = add_items(campaign, reviewer, 1, identity_kind="bot", identity_department="Finance")
    past = add_items(campaign, reviewer, 1, identity_status="terminated", is_terminated=True, recommendation="revoke")
    admin_role = add_items(campaign, reviewer, 1, role="Admin", is_privileged=True)
    named = add_items(campaign, reviewer, 1, identity_email="grace.hopper@corp.test")
    client = client_for(reviewer)

    def ids(**params):
        return shown_item_ids(client.get(items_url(campaign, **params)))

    assert ids(department="Sales") == {i.pk for i in sales}
    assert ids(application="Slack") == {slack[0].pk}
    assert ids(identity_kind="bot") == {bot[0].pk}
    assert ids(status="terminated") == {past[0].pk}
    assert ids(finding="terminated") == {past[0].pk}
    assert ids(recommendation="revoke") == {past[0].pk}
    assert ids(role="admin") == {admin_role[0].pk}
    assert ids(finding="privileged") == {admin_role[0].pk}
    assert ids(search="hopper") == {named[0].pk}
    with scope(campaign.organization):
        review_item_decide(item=sales[0], actor=reviewer, decision="approve")
    assert ids(decision="approve") == {sales[0].pk}
    assert sales[0].pk not in ids(decision="pending")
    assert len(ids(decision="pending")) == 8


def test_past_user_badge_for_terminated_identities(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 1, identity_status="terminated")
    assert "Past user" in client_for(reviewer).get(items_url(campaign)).content.decode()


def test_unknown_filter_value_is_a_clear_error(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 1)
    response = client_for(reviewer).get(items_url(campaign, identity_kind="robot"))
    assert response.status_code == 400
    assert "Unknown identity kind &#x27;robot&#x27;" in response.content.decode()
    assert shown_item_ids(response) == set()


def test_keyset_pages_walk_every_item_once_in_sort_order(campaign, reviewer, client_for):
    for dept in ["Sales", "Finance", "Legal", "Engineering"]:
        add_items(campaign, reviewer, 5, identity_department=dept)
    client = client_for(reviewer)
    seen: list[int] = []
    url = items_url(campaign, sort="department", page_size=6)
    pages = 0
    while url:
        body = client.get(url).content.decode()
        seen.extend(int(i) for i in re.findall(r'<tr id="item-(\d+)"', body))
        match = re.search(r'<a href="([^"]+)" rel="next">', body)
        url = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    assert pages == 4
    with scopes_disabled():
        expected = list(
            ReviewItem.objects.filter(campaign=campaign).order_by("identity_department", "id").values_list("pk", flat=True)
        )
    assert seen == expected
    # And back: the previous link of the last page shows the page before it.
    body = client.get(items_url(campaign, sort="-department", page_size=6)).content.decode()
    first_desc = [int(i) for i in re.findall(r'<tr id="item-(\d+)"', body)]
    assert first_desc == list(reversed(expected))[:6]
    next_url = re.search(r'<a href="([^"]+)" rel="next">', body).group(1).replace("&amp;", "&")
    body = client.get(next_url).content.decode()
    prev_url = re.search(r'<a href="([^"]+)" rel="prev">', body).group(1).replace("&amp;", "&")
    assert [int(i) for i in re.findall(r'<tr id="item-(\d+)"', client.get(prev_url).content.decode())] == first_desc


def test_htmx_filter_request_gets_only_the_table_fragment(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 2)
    response = client_for(reviewer).get(items_url(campaign, department="Engineering"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="items-table">') and "<html" not in body
    assert len(shown_item_ids(response)) == 2


def test_item_page_query_count_does_not_grow_with_page_size(
    campaign, reviewer, other_reviewer, member, client_for, django_assert_num_queries
):
    add_items(campaign, reviewer, 60, is_dormant=True)
    add_items(campaign, other_reviewer, 60)
    for who in (reviewer, member(Role.ADMIN)):
        client = client_for(who)
        client.get(items_url(campaign, page_size=5))  # warms the filter-option cache
        counts = []
        for size in (5, 100):
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as ctx:
                response = client.get(items_url(campaign, page_size=size))
            assert len(shown_item_ids(response)) == min(size, 60 if who is reviewer else 120)
            counts.append(len(ctx.captured_queries))
        assert counts[0] == counts[1]
        with django_assert_num_queries(counts[0]):
            client.get(items_url(campaign, page_size=50, department="Engineering"))


# ---------------------------------------------------------------------------------------------------
# Per-item decisions and the detail page
# ---------------------------------------------------------------------------------------------------


def test_item_detail_shows_snapshot_findings_recommendation_history_and_ticket(
    org, campaign, reviewer, client_for
):
    [item] = add_items(
        campaign, reviewer, 1, identity_email="ann@corp.test", identity_status="terminated", is_terminated=True,
        recommendation="revoke", recommendation_reason="Identity is terminated",
    )
    with scopes_disabled():
        ReviewItem.objects.filter(pk=item.pk).update(
            ticket_key="SEC-12", ticket_url="https://tickets.example.test/SEC-12", ticket_status="open"
        )
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="approve", comment="first look")
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left in May")
    body = client_for(reviewer).get(item_url(item)).content.decode()
    for text in ["ann@corp.test", "Past user", "Terminated identity", "Identity is terminated", "SEC-12",
                 "left in May", "first look", "Single decision", "Change the decision"]:
        assert text in body
    history = body[body.index("Decision history"):]
    assert history.index("first look") < history.index("left in May")


def test_decide_from_the_detail_page_with_reason_and_comment(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    response = client_for(reviewer).post(
        item_url(item, "review_item_decide"),
        {"decision": "exception", "reason": "Shared on-call account", "comment": "Reviewed with the owner",
         "next": item_url(item)},
    )
    assert response.status_code == 302 and response.url == item_url(item)
    item = fresh(item)
    assert (item.decision, item.decision_reason, item.decision_comment) == (
        "exception", "Shared on-call account", "Reviewed with the owner"
    )
    assert AuditEvent.objects.filter(action="campaign_decision").count() == 1


def test_revoke_without_reason_is_refused_and_changes_nothing(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(reviewer)
    response = client.post(item_url(item, "review_item_decide"), {"decision": "revoke"}, follow=True)
    assert "A reason is required to revoke" in response.content.decode()
    assert fresh(item).decision == "" and events_of(campaign) == []


def test_htmx_row_decision_returns_the_updated_row(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    response = client_for(reviewer).post(
        item_url(item, "review_item_decide"),
        {"decision": "revoke", "reason": "No longer on the team"},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="item-{item.pk}" ')
    assert 'value="revoke" class="decide decide-revoke" aria-pressed="true"' in body
    assert "No longer on the team" in body and "Revoke recorded" in body
    assert fresh(item).decision == "revoke"


def test_htmx_row_decision_error_is_shown_in_the_row(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    response = client_for(reviewer).post(
        item_url(item, "review_item_decide"), {"decision": "exception"}, headers={"HX-Request": "true"}
    )
    assert "A reason is required" in response.content.decode()
    assert fresh(item).decision == ""


# ---------------------------------------------------------------------------------------------------
# Bulk decisions
# ---------------------------------------------------------------------------------------------------


def test_bulk_selected_decides_only_the_checked_items(campaign, reviewer, client_for):
    items = add_items(campaign, reviewer, 5)
    response = client_for(reviewer).post(
        reverse("review_bulk", args=[campaign.organization.slug, campaign.pk]),
        {"mode": "selected", "decision": "approve", "item_ids": [items[0].pk, items[3].pk]},
        follow=True,
    )
    assert "Approve: 2 items decided." in response.content.decode()
    assert [fresh(i).decision for i in items] == ["approve", "", "", "approve", ""]
    assert AuditEvent.objects.get(action="campaign_bulk_decision").details["count"] == 2


def test_bulk_selected_with_someone_elses_item_changes_nothing(campaign, reviewer, other_reviewer, client_for):
    mine = add_items(campaign, reviewer, 1)
    theirs = add_items(campaign, other_reviewer, 1)
    response = client_for(reviewer).post(
        reverse("review_bulk", args=[campaign.organization.slug, campaign.pk]),
        {"mode": "selected", "decision": "approve", "item_ids": [mine[0].pk, theirs[0].pk]},
        follow=True,
    )
    assert f"No such items in this campaign for you: {theirs[0].pk}" in response.content.decode()
    assert fresh(mine[0]).decision == "" and fresh(theirs[0]).decision == ""


def test_all_in_view_confirms_the_count_and_applies_to_every_matching_item_beyond_the_page(
    campaign, reviewer, client_for
):
    sales = add_items(campaign, reviewer, 12, identity_department="Sales")
    finance = add_items(campaign, reviewer, 4, identity_department="Finance")
    client = client_for(reviewer)
    # The page shows 5 of the 12 Sales items...
    assert len(shown_item_ids(client.get(items_url(campaign, department="Sales", page_size=5)))) == 5
    # ...the confirmation states all 12.
    confirm = client.get(
        reverse("review_bulk_confirm", args=[campaign.organization.slug, campaign.pk]),
        {"apply": "approve", "department": "Sales"},
    )
    body = confirm.content.decode()
    assert confirm.status_code == 200 and "Approve 12 items?" in body
    response = client.post(
        reverse("review_bulk", args=[campaign.organization.slug, campaign.pk]),
        {"mode": "all", "decision": "approve", "filter_department": "Sales", "expected": "12"},
        follow=True,
    )
    assert "Approve: 12 items decided." in response.content.decode()
    assert {fresh(i).decision for i in sales} == {"approve"}
    assert {fresh(i).decision for i in finance} == {""}
    audit = AuditEvent.objects.get(action="campaign_bulk_decision")
    assert audit.details["count"] == 12 and "department: Sales" in audit.details["scope"]
    assert_chain_intact(campaign)


def test_all_in_view_with_a_changed_count_changes_nothing(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 3, identity_department="Sales")
    response = client_for(reviewer).post(
        reverse("review_bulk", args=[campaign.organization.slug, campaign.pk]),
        {"mode": "all", "decision": "approve", "filter_department": "Sales", "expected": "2"},
        follow=True,
    )
    assert "now matches 3 items" in response.content.decode()
    assert events_of(campaign) == []


def test_revoke_all_in_view_requires_a_reason(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 3)
    response = client_for(reviewer).post(
        reverse("review_bulk", args=[campaign.organization.slug, campaign.pk]),
        {"mode": "all", "decision": "revoke", "expected": "3"},
        follow=True,
    )
    assert "A reason is required to revoke" in response.content.decode()
    assert events_of(campaign) == []


# ---------------------------------------------------------------------------------------------------
# Sign-off
# ---------------------------------------------------------------------------------------------------


def test_sign_off_page_flow_locks_decisions(org, campaign, reviewer, client_for):
    items = add_items(campaign, reviewer, 2)
    client = client_for(reviewer)
    sign_off = reverse("review_sign_off", args=[org.slug, campaign.pk])
    body = client.post(sign_off, follow=True).content.decode()
    assert "2 of your 2 items are still undecided" in body
    with scope(org):
        for item in items:
            review_item_decide(item=item, actor=reviewer, decision="approve")
    body = client.post(sign_off, follow=True).content.decode()
    assert "Signed off: your 2 decisions" in body
    assert all(fresh(i).signed_off_at for i in items)
    body = client.post(item_url(items[0], "review_item_decide"), {"decision": "revoke", "reason": "x"}, follow=True)
    assert "can no longer be changed" in body.content.decode()
    assert fresh(items[0]).decision == "approve"
    assert "Locked" in client.get(items_url(campaign)).content.decode()
    progress = client.get(reverse("review_progress", args=[org.slug, campaign.pk]), headers={"HX-Request": "true"})
    assert "Signed off" in progress.content.decode() and "Sign off my review" not in progress.content.decode()


def test_progress_panel_counts_the_reviewers_items_and_enables_sign_off_when_done(org, campaign, reviewer, client_for):
    items = add_items(campaign, reviewer, 3)
    client = client_for(reviewer)
    url = reverse("review_progress", args=[org.slug, campaign.pk])
    body = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<section id="review-bar"')
    assert "<strong>0</strong> of <strong>3</strong> decided" in body and "3 left to decide" in body
    assert re.search(r"<button[^>]*disabled[^>]*>Sign off my review", body)
    with scope(org):
        for item in items:
            review_item_decide(item=item, actor=reviewer, decision="approve")
    body = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "<strong>3</strong> of <strong>3</strong> decided" in body and "All decided." in body
    assert re.search(r'<button type="submit" class="ok" data-sign-off>Sign off my review', body)
    assert 'hx-get="' + url in client.get(items_url(campaign)).content.decode()


def test_review_bar_counts_the_items_matching_the_filters_for_the_bulk_actions(org, campaign, reviewer, client_for):
    add_items(campaign, reviewer, 3, identity_department="Sales")
    add_items(campaign, reviewer, 2, identity_department="Finance")
    client = client_for(reviewer)
    url = reverse("review_progress", args=[org.slug, campaign.pk])
    body = client.get(url, {"department": "Sales"}, headers={"HX-Request": "true"}).content.decode()
    assert "<strong data-matching>3</strong> in view" in body and "Approve all" in body
    assert '<input type="hidden" name="department" value="Sales">' in body
    assert "<strong data-matching>5</strong> in view" in client.get(url, headers={"HX-Request": "true"}).content.decode()
    # The items page asks for the bar with its own filters.
    page = client.get(items_url(campaign, department="Sales")).content.decode()
    assert f'hx-get="{url}?department=Sales&amp;next=' in page


def test_after_sign_off_the_bar_shows_done_and_links_to_the_next_open_review(org, campaign, reviewer, client_for):
    items = add_items(campaign, reviewer, 2)
    later = active_campaign(org, title="Q4 privileged access")
    add_items(later, reviewer, 3)
    client = client_for(reviewer)
    with scope(org):
        for item in items:
            review_item_decide(item=item, actor=reviewer, decision="approve")
    client.post(reverse("review_sign_off", args=[org.slug, campaign.pk]))
    body = client.get(reverse("review_progress", args=[org.slug, campaign.pk]), headers={"HX-Request": "true"})
    body = body.content.decode()
    assert "You’re done" in body and "all <strong>2</strong> of your decisions" in body
    assert "Next review: Q4 privileged access (3 open)" in body
    assert reverse("review_items", args=[org.slug, later.pk]) + "?reviewer=me" in body
    assert "Approve all" not in body and "selected" not in body


def test_review_rows_put_the_decision_first_with_the_recommendation_beside_it(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 1, recommendation="revoke", recommendation_reason="Unused for 120 days")
    body = client_for(reviewer).get(items_url(campaign)).content.decode()
    row = re.search(r'<tr id="item-\d+".*?</tr>', body, re.S).group(0)
    cells = re.findall(r'<td class="(cell-[a-z]+)"', row)
    assert cells[:5] == ["cell-select", "cell-decide", "cell-rec", "cell-identity", "cell-app"]
    assert row.index(">Approve<") < row.index("Unused for 120 days") < row.index('<td class="cell-identity">')
    assert 'data-ask-reason="revoke"' in row and 'data-ask-reason="exception"' in row


# ---------------------------------------------------------------------------------------------------
# Outsiders and roles, for every page
# ---------------------------------------------------------------------------------------------------


def _pages(campaign, item):
    slug = campaign.organization.slug
    return [
        ("get", reverse("review_items", args=[slug, campaign.pk]), {}),
        ("get", reverse("review_item_detail", args=[slug, campaign.pk, item.pk]), {}),
        ("get", reverse("review_progress", args=[slug, campaign.pk]), {}),
        ("post", reverse("review_item_decide", args=[slug, campaign.pk, item.pk]), {"decision": "approve"}),
        ("get", reverse("review_bulk_confirm", args=[slug, campaign.pk]), {"apply": "approve"}),
        ("post", reverse("review_bulk", args=[slug, campaign.pk]), {"mode": "all", "decision": "approve", "expected": 1}),
        ("post", reverse("review_sign_off", args=[slug, campaign.pk]), {}),
    ]


def test_outsider_gets_404_on_every_review_page(campaign, reviewer, outsider, client_for):
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(outsider)
    for method, url, data in _pages(campaign, item):
        assert getattr(client, method)(url, data).status_code == 404, url
        # Also with the outsider's own organization in the URL: the campaign does not exist there.
        own = url.replace(f"/o/{campaign.organization.slug}/", f"/o/{outsider.organization.slug}/")
        assert getattr(client, method)(own, data).status_code == 404, own
    assert fresh(item).decision == ""


def test_unknown_campaign_and_item_are_404(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(reviewer)
    assert client.get(reverse("review_items", args=["acme", uuid.uuid4()])).status_code == 404
    assert client.get(reverse("review_item_detail", args=["acme", campaign.pk, item.pk + 999])).status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR])
def test_roles_without_decide_permission_get_403_on_decision_pages(campaign, reviewer, member, client_for, role):
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(member(role))
    for method, url, data in _pages(campaign, item)[3:]:
        assert getattr(client, method)(url, data).status_code == 403, url
    assert fresh(item).decision == ""


def test_free_plan_gets_403_on_review_pages(free_org, member, client_for):
    admin = member(Role.ADMIN, organization=free_org)
    campaign = active_campaign(free_org)
    [item] = add_items(campaign, admin, 1)
    client = client_for(admin)
    for method, url, data in _pages(campaign, item):
        assert getattr(client, method)(url, data).status_code == 403, url


def test_decisions_refused_on_a_completed_campaign(org, reviewer, client_for):
    campaign = active_campaign(org, status=CampaignStatus.COMPLETED)
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(reviewer)
    body = client.get(items_url(campaign)).content.decode()
    assert 'class="decide-form"' not in body
    bar = client.get(reverse("review_progress", args=[org.slug, campaign.pk]), headers={"HX-Request": "true"})
    assert "Approve all" not in bar.content.decode() and "Sign off" not in bar.content.decode()
    body = client.post(item_url(item, "review_item_decide"), {"decision": "approve"}, follow=True).content.decode()
    assert "only be made while the campaign is active" in body
    assert fresh(item).decision == ""


def test_approve_all_pending_in_view_leaves_earlier_decisions_alone(org, campaign, reviewer, client_for):
    items = add_items(campaign, reviewer, 4)
    with scope(org):
        review_item_decide(item=items[0], actor=reviewer, decision="revoke", reason="contractor left")
    client = client_for(reviewer)
    confirm = client.get(
        reverse("review_bulk_confirm", args=[org.slug, campaign.pk]), {"apply": "approve", "decision": "pending"}
    )
    assert "Approve 3 items?" in confirm.content.decode()
    client.post(
        reverse("review_bulk", args=[org.slug, campaign.pk]),
        {"mode": "all", "decision": "approve", "filter_decision": "pending", "expected": "3"},
    )
    assert [fresh(i).decision for i in items] == ["revoke", "approve", "approve", "approve"]


def test_snapshot_text_is_escaped_in_the_table(campaign, reviewer, client_for):
    add_items(
        campaign, reviewer, 1, identity_name="<script>alert(1)</script>", role='"><img src=x>',
        recommendation_reason="<b>dormant</b>", application_name="A&B",
    )
    body = client_for(reviewer).get(items_url(campaign)).content.decode()
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '"><img src=x>' not in body and "&lt;b&gt;dormant&lt;/b&gt;" in body and "A&amp;B" in body


# ---------------------------------------------------------------------------------------------------
# Optional columns and the size of a row
# ---------------------------------------------------------------------------------------------------


COLUMNS_COOKIE = "thalian-cols-review-items"


def _first_row(body: str) -> str:
    return re.search(r'<tr id="item-\d+".*?</tr>', body, re.S).group(0)


def _checked_columns(body: str) -> set[str]:
    return set(re.findall(r'<input type="checkbox" data-column="([a-z_]+)" checked>', body))


def test_items_page_shows_the_default_optional_columns_and_no_others(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 1, identity_department="Finance", is_dormant=True)
    body = client_for(reviewer).get(items_url(campaign)).content.decode()
    row = _first_row(body)
    assert re.findall(r'data-col="([a-z_]+)"', row) == ["findings", "last_used"]
    assert "Dormant" in row and "Finance" not in row
    assert re.findall(r'<th scope="col" data-col="([a-z_]+)"', body) == ["findings", "last_used"]
    assert _checked_columns(body) == {"findings", "last_used"}
    # The chooser still offers every optional column.
    assert len(re.findall(r'data-column="[a-z_]+"', body)) == 8


def test_items_page_renders_the_columns_chosen_in_the_cookie(campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1, identity_department="Finance", identity_kind="service_account",
                       ticket_key="SEC-7", ticket_url="https://tickets.example/SEC-7", ticket_status="open")
    client = client_for(reviewer)
    client.cookies[COLUMNS_COOKIE] = "ticket.department.kind.unknown"
    body = client.get(items_url(campaign)).content.decode()
    row = _first_row(body)
    # In the table's order, whatever the order in the cookie; unknown keys are ignored.
    assert re.findall(r'data-col="([a-z_]+)"', row) == ["department", "kind", "ticket"]
    assert ">Finance<" in row and "Service account" in row and ">SEC-7</a>" in row
    assert _checked_columns(body) == {"department", "kind", "ticket"}
    # A decision in the row answers the row with the same columns.
    response = client.post(item_url(item, "review_item_decide"), {"decision": "approve"}, headers={"HX-Request": "true"})
    assert re.findall(r'data-col="([a-z_]+)"', response.content.decode()) == ["department", "kind", "ticket"]
    client.cookies[COLUMNS_COOKIE] = "none"
    body = client.get(items_url(campaign)).content.decode()
    assert "data-col=" not in _first_row(body) and _checked_columns(body) == set()


def test_column_chooser_reloads_the_table_alone(campaign, reviewer, client_for):
    add_items(campaign, reviewer, 2)
    client = client_for(reviewer)
    client.cookies[COLUMNS_COOKIE] = "manager"
    response = client.get(items_url(campaign), headers={"HX-Request": "true", "HX-Target": "items-grid"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div class="table-wrap" id="items-grid">')
    assert "review-bar" not in body and "column-chooser" not in body
    assert len(shown_item_ids(response)) == 2 and body.count(">boss@corp.test<") == 2


def test_row_links_are_relative_to_the_items_page_and_reach_the_item(campaign, reviewer, client_for):
    from urllib.parse import urljoin

    [item] = add_items(campaign, reviewer, 1)
    page = items_url(campaign, department="Engineering")
    row = _first_row(client_for(reviewer).get(page).content.decode())
    href = re.search(r'<td class="cell-identity"><a href="([^"]+)"', row).group(1)
    action = re.search(r'<form method="post" action="([^"]+)" class="decide-form"', row).group(1)
    assert urljoin("http://testserver" + page, href) == "http://testserver" + item_url(item)
    assert urljoin("http://testserver" + page, action) == "http://testserver" + item_url(item, "review_item_decide")
    # The CSRF token travels once, in the body's hx-headers, not in every row.
    assert "csrfmiddlewaretoken" not in row
