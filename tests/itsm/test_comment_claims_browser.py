"""Real Chromium: a ticket comment that was not delivered, on the campaign's remediation page and the queue,
retried with the keyboard; screenshots at 1366x768 and 390x844, with axe."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from itsm import comments
from itsm.models import CommentState, Ticket, TicketComment
from itsm.tasks import resume_due
from tests.browser_support import assert_accessible, assert_fits_viewport, login, screenshots
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_sees_the_undelivered_comment_and_retries_it(
    browser_page, live_server, member, jira, connect, revoked_item, decide
):
    connect(jira)
    item = revoked_item()
    decide(item)
    with scopes_disabled():
        ticket = Ticket.objects.get(item=item)
        comment = TicketComment.objects.create(
            organization_id=ticket.organization_id, ticket=ticket, state=CommentState.SENDING,
            body="The revoke decision was withdrawn: grace@acme.test changed it to approve.",
            attempts=comments.COMMENT_MAX_ATTEMPTS, claimed_at=timezone.now() - dt.timedelta(hours=1),
        )
    resume_due.delay()
    admin = member(Role.ADMIN)
    page = browser_page
    login(page, live_server, admin.user.email, "pw")

    page.goto(f"{live_server.url}/o/acme/remediation/")
    page.get_by_text("Comment not delivered").wait_for()
    assert_accessible(page)
    screenshots(page, "remediation-queue-comment-not-delivered")

    page.get_by_role("link", name="Retry on the campaign's remediation page").click()
    page.get_by_role("heading", name="Ticket comments not delivered").wait_for()
    assert "did not finish after 12 attempt(s)" in page.locator("main").inner_text()
    assert_accessible(page)
    for width, height in ((1366, 768), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        assert_fits_viewport(page)
    screenshots(page, "campaign-remediation-comment-not-delivered")
    retry = page.get_by_role("button", name="Retry comments on OPS-1")
    retry.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert "1 comment on OPS-1 queued again" in page.locator("main").inner_text()
    with scopes_disabled():
        assert TicketComment.objects.get(pk=comment.pk).state == CommentState.SENT
    assert len(jira.comments["OPS-1"]) == 1
