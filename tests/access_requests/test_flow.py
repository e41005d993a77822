"""End to end on PostgreSQL: a member's grant approved by the manager (a guest, through the e-mailed link) and the
application owner, ticketed at the fake Jira through the outbox and verified by a later import; a denial; a
temporary grant that ends in a removal ticket and a verified removal; self-approval refused; expiry of undecided
requests; the hand-off with the broker down."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from access_requests.models import AccessRequest
from access_requests.tasks import sweep_organization
from campaigns.models import Delegation
from itsm.models import RequestTicket
from notifications.access_requests import access_request_notices
from notifications.models import Notification
from thalian import outbox
from thalian.models import OutboxEvent
from thalian.tenancy import scope, scopes_disabled

from .conftest import guest_link, import_entitlements

pytestmark = pytest.mark.django_db

URL = "/api/v1/orgs/acme/access-requests/"


def _request(org, pk) -> AccessRequest:
    with scope(org):
        return AccessRequest.objects.get(pk=pk)


def _notified(org, event: str) -> set[str]:
    with scope(org):
        return set(Notification.objects.filter(event=event).values_list("recipient", flat=True))


def _submit(api, capture, **extra) -> str:
    with capture(execute=True):
        response = api.post(URL, {"type": "grant", "application": "GitHub", "role": "maintainer",
                                  "reason": "Release duty", **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _guest_approves(client, mailoutbox, capture, decision="approve", reason="Needed for releases"):
    link = guest_link(mailoutbox, "max@acme.test")
    page = client.get(link)
    assert page.status_code == 200 and "Access request to approve" in page.content.decode()
    with capture(execute=True):
        done = client.post(link, {"decision": decision, "reason": reason})
    assert done.status_code == 200, done.content.decode()[:2000]
    return link


def test_a_grant_approved_by_the_guest_manager_and_the_owner_is_ticketed_and_verified_by_an_import(
    team, api_for, client, mailoutbox, jira, connect, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    connect(jira)
    ada = api_for(team.ada)
    request_id = _submit(ada, capture)

    # Stage 1: Max, not a member, gets his personal link by e-mail and approves on its page.
    link = _guest_approves(client, mailoutbox, capture)
    assert client.get(link).status_code == 410  # decided: the link no longer works
    detail = ada.get(f"{URL}{request_id}/").json()
    assert [a["decision"] for a in detail["approvals"]] == ["approved", "pending"]
    assert detail["approvals"][1]["approver"] == "olga@acme.test"
    assert "olga@acme.test" in _notified(team.org, "access_approval_needed")

    # Nobody but the current approver decides: not the requester, not an admin who is not the approver.
    for who in (team.ada, team.alan, team.viewer):
        response = api_for(who).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
        assert response.status_code in (403, 404), who
    assert api_for(team.alan).post(f"{URL}{request_id}/decision/", {"decision": "approve"},
                                   format="json").status_code == 403

    with capture(execute=True):
        response = api_for(team.olga).post(f"{URL}{request_id}/decision/",
                                           {"decision": "approve", "reason": "Owner agrees"}, format="json")
    assert response.status_code == 200, response.json()

    # Exactly one ticket at Jira, stating what to do, for whom, until when, with the link back.
    [ticket] = jira.tickets.values()
    assert ticket["summary"] == "Grant maintainer access for ada@acme.test in GitHub"
    assert f"thalian-request-{request_id}-fulfil" in ticket["labels"]
    for line in ("Type: grant", "Identity: Ada Lovelace <ada@acme.test>", "Application: GitHub",
                 "Role: maintainer", "Until: permanent", "Approved by: max@acme.test, olga@acme.test",
                 f"https://thalian.example.com/o/acme/access-requests/{request_id}/"):
        assert line in ticket["description"]
    req = _request(team.org, request_id)
    assert (req.status, req.ticket_key, req.ticket_state) == ("fulfilling", ticket["key"], "open")

    # The next import lists the grant: verified, and requester and approvers are told.
    with capture(execute=True):
        import_entitlements(team.org, [("GitHub", "ada@acme.test", "member"),
                                       ("GitHub", "ada@acme.test", "maintainer")])
    req = _request(team.org, request_id)
    assert req.status == "fulfilled" and req.fulfilled_at is not None
    assert {"ada@acme.test", "olga@acme.test"} <= _notified(team.org, "access_request_verified")
    trail = [t["action"] for t in ada.get(f"{URL}{request_id}/").json()["trail"]]
    assert trail == ["created", "stage_assigned", "approved", "stage_assigned", "approved", "approved_all",
                     "ticket_pending", "ticket_open", "fulfilled"]
    # A second import opens nothing more and changes nothing.
    with capture(execute=True):
        import_entitlements(team.org, [("GitHub", "ada@acme.test", "member"),
                                       ("GitHub", "ada@acme.test", "maintainer")])
    assert len(jira.tickets) == 1


def test_a_denial_ends_the_request_and_tells_the_requester(team, api_for, client, mailoutbox, jira, connect,
                                                           django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    connect(jira)
    request_id = _submit(api_for(team.ada), capture)
    link = guest_link(mailoutbox, "max@acme.test")
    refused = client.post(link, {"decision": "deny", "reason": ""})
    assert refused.status_code == 400 and "say why the access is denied" in refused.content.decode()
    _guest_approves(client, mailoutbox, capture, decision="deny", reason="Not on the release team")
    req = _request(team.org, request_id)
    assert req.status == "denied"
    assert "ada@acme.test" in _notified(team.org, "access_request_decided")
    with scope(team.org):
        [notice] = Notification.objects.filter(event="access_request_decided", recipient="ada@acme.test")
    assert "Not on the release team" in notice.body
    assert jira.tickets == {}
    assert "olga@acme.test" not in _notified(team.org, "access_approval_needed")


def test_temporary_access_ends_in_a_removal_ticket_verified_by_the_next_import(
    team, api_for, client, mailoutbox, jira, connect, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    connect(jira)
    start = timezone.now()
    ends_at = start + dt.timedelta(days=10)
    request_id = _submit(api_for(team.ada), capture, ends_at=ends_at.isoformat())
    _guest_approves(client, mailoutbox, capture)
    with capture(execute=True):
        api_for(team.olga).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
    [grant_ticket] = jira.tickets.values()
    assert "Temporary until:" in grant_ticket["description"]
    with capture(execute=True):
        import_entitlements(team.org, [("GitHub", "ada@acme.test", "member"),
                                       ("GitHub", "ada@acme.test", "maintainer")])
    assert _request(team.org, request_id).status == "fulfilled"

    # Seven days and one day before, the identity and the owner are told, once per step.
    with time_machine.travel(ends_at - dt.timedelta(days=6), tick=False):
        assert access_request_notices(organization_id=team.org.pk) >= 2
        assert access_request_notices(organization_id=team.org.pk) == 0
    with time_machine.travel(ends_at - dt.timedelta(hours=12), tick=False):
        access_request_notices(organization_id=team.org.pk)
    with scope(team.org):
        titles = sorted(Notification.objects.filter(event="access_ending", recipient="ada@acme.test")
                        .values_list("title", flat=True))
    assert [t.split(":")[0] for t in titles] == ["Temporary access ends in 1 day", "Temporary access ends in 7 days"]
    assert "olga@acme.test" in _notified(team.org, "access_ending")

    # At the end a removal ticket opens (once, however often the sweep runs).
    with time_machine.travel(ends_at + dt.timedelta(minutes=5), tick=False), capture(execute=True):
        assert sweep_organization(team.org.pk) == {"expired": 0, "access_ended": 1}
        assert sweep_organization(team.org.pk) == {"expired": 0, "access_ended": 0}
    assert len(jira.tickets) == 2
    removal = jira.tickets[sorted(jira.tickets)[-1]]
    assert removal["summary"] == "Remove maintainer access for ada@acme.test in GitHub"
    assert f"thalian-request-{request_id}-expiry" in removal["labels"]
    assert "ada@acme.test" in _notified(team.org, "access_ended")
    # An import still listing the access verifies nothing; one without it proves the removal.
    with capture(execute=True):
        import_entitlements(team.org, [("GitHub", "ada@acme.test", "member"),
                                       ("GitHub", "ada@acme.test", "maintainer")])
    assert _request(team.org, request_id).status == "fulfilled"
    with capture(execute=True):
        import_entitlements(team.org, [("GitHub", "ada@acme.test", "member")])
    req = _request(team.org, request_id)
    assert req.status == "revoked" and req.revoked_at is not None
    with scope(team.org):
        assert RequestTicket.objects.filter(access_request_id=request_id).count() == 2


def test_nobody_approves_their_own_request_or_their_own_access(team, api_for, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    olga = api_for(team.olga)
    # Olga owns GitHub and asks for herself: she has no manager (fallback: Alan) and may not approve as owner.
    request_id = _submit(olga, capture)
    detail = olga.get(f"{URL}{request_id}/").json()
    assert detail["approvals"][0]["approver"] == "alan@acme.test"
    assert "fallback" in detail["approvals"][0]["note"]
    with capture(execute=True):
        assert api_for(team.alan).post(f"{URL}{request_id}/decision/", {"decision": "approve"},
                                       format="json").status_code == 200
    stage_two = olga.get(f"{URL}{request_id}/").json()["approvals"][1]
    # The owner is the requester and the fallback approved stage 1: nobody may approve it until reassigned.
    assert stage_two["approver"] == "" and "reassigns" in stage_two["note"]
    assert olga.post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json").status_code == 403
    admin = api_for(team.alan)
    refused = admin.post(f"{URL}{request_id}/reassign/", {"to": "olga@acme.test", "reason": "x"}, format="json")
    assert refused.status_code == 400 and "to" in refused.json()["errors"]
    assert api_for(team.ada).post(f"{URL}{request_id}/reassign/", {"to": "ada@acme.test", "reason": "x"},
                                  format="json").status_code == 403
    with capture(execute=True):
        moved = admin.post(f"{URL}{request_id}/reassign/", {"to": "ada@acme.test", "reason": "Team lead"},
                           format="json")
    assert moved.status_code == 200
    with capture(execute=True):
        assert api_for(team.ada).post(f"{URL}{request_id}/decision/", {"decision": "approve"},
                                      format="json").status_code == 200
    req = _request(team.org, request_id)
    assert req.status == "approved" and req.ticket_state == "waiting"  # no ticketing connection: the queue


def test_undecided_requests_expire_and_the_requester_is_told(team, api_for, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    request_id = _submit(api_for(team.ada), capture)
    deadline = _request(team.org, request_id).approval_deadline
    with time_machine.travel(deadline - dt.timedelta(days=9), tick=False):
        access_request_notices(organization_id=team.org.pk)
    assert "alan@acme.test" in _notified(team.org, "access_approval_escalated")
    with time_machine.travel(deadline + dt.timedelta(minutes=1), tick=False), capture(execute=True):
        assert sweep_organization(team.org.pk)["expired"] == 1
        assert sweep_organization(team.org.pk)["expired"] == 0
    assert _request(team.org, request_id).status == "expired"
    assert "ada@acme.test" in _notified(team.org, "access_request_decided")


def test_an_approval_committed_with_the_broker_down_is_ticketed_by_the_sweep(
    team, api_for, client, mailoutbox, jira, connect, broker_down, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    connect(jira)
    request_id = _submit(api_for(team.ada), capture)
    _guest_approves(client, mailoutbox, capture)
    with broker_down(), capture(execute=True):
        response = api_for(team.olga).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
    assert response.status_code == 200
    assert jira.tickets == {}
    with scopes_disabled():
        assert OutboxEvent.objects.filter(name="access_requests.decided", state="pending").count() == 1
    with capture(execute=True):
        outbox.outbox_sweep()
    assert len(jira.tickets) == 1
    assert _request(team.org, request_id).status == "fulfilling"


def test_a_ticket_the_vendor_refuses_is_visible_on_the_request_and_admins_are_told(
    team, api_for, client, mailoutbox, jira, connect, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    connect(jira, project_key="NOPE")
    request_id = _submit(api_for(team.ada), capture)
    _guest_approves(client, mailoutbox, capture)
    with capture(execute=True):
        api_for(team.olga).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
    req = _request(team.org, request_id)
    assert req.ticket_state == "failed" and req.ticket_error
    assert "alan@acme.test" in _notified(team.org, "access_request_ticket_failed")


def test_without_a_connection_the_owner_opens_the_ticket_from_the_remediation_queue(
    team, api_for, client_for, jira, connect, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    team.org.guest_reviewers_enabled = False  # Max is no member and no guest: stage 1 goes to the fallback (Alan)
    team.org.save()
    request_id = _submit(api_for(team.ada), capture)
    for approver in (team.alan, team.olga):
        with capture(execute=True):
            assert api_for(approver).post(f"{URL}{request_id}/decision/", {"decision": "approve"},
                                          format="json").status_code == 200
    assert _request(team.org, request_id).ticket_state == "waiting"
    queue = client_for(team.olga).get("/o/acme/remediation/").content.decode()
    assert "Access requests waiting for a ticket" in queue and "maintainer" in queue
    # Another reviewer who owns nothing sees nothing to open.
    assert api_for(team.ada).post(f"{URL}{request_id}/ticket/open/").status_code == 404
    refused = api_for(team.olga).post(f"{URL}{request_id}/ticket/open/")
    assert refused.status_code == 400 and "No ticketing connection" in refused.json()["detail"]
    connect(jira)
    with capture(execute=True):
        response = client_for(team.olga).post(f"/o/acme/remediation/access-requests/{request_id}/open-ticket/")
    assert response.status_code == 302
    assert len(jira.tickets) == 1
    req = _request(team.org, request_id)
    assert (req.status, req.ticket_state) == ("fulfilling", "open")
    assert api_for(team.olga).post(f"{URL}{request_id}/ticket/open/").status_code == 404  # nothing waits now


def test_a_failed_request_ticket_is_retried_by_staff(team, api_for, client, mailoutbox, jira, connect,
                                                     django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    connection = connect(jira, project_key="NOPE")
    request_id = _submit(api_for(team.ada), capture)
    _guest_approves(client, mailoutbox, capture)
    with capture(execute=True):
        api_for(team.olga).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
    assert _request(team.org, request_id).ticket_state == "failed"
    assert api_for(team.olga).post(f"{URL}{request_id}/ticket/retry/").status_code == 403
    with scope(team.org):
        connection.config = {**connection.config, "project_key": "OPS"}
        connection.updated_at = timezone.now()
        connection.save()
    with capture(execute=True):
        response = api_for(team.alan).post(f"{URL}{request_id}/ticket/retry/")
    assert response.status_code == 202 and response.json()["ticket_state"] == "pending"  # opened after commit
    assert len(jira.tickets) == 1
    assert _request(team.org, request_id).ticket_state == "open"


def test_the_ticket_status_is_synced_onto_the_request(team, api_for, client, mailoutbox, jira, connect,
                                                      django_capture_on_commit_callbacks):
    from itsm.tasks import sync_statuses

    capture = django_capture_on_commit_callbacks
    connect(jira)
    request_id = _submit(api_for(team.ada), capture)
    _guest_approves(client, mailoutbox, capture)
    with capture(execute=True):
        api_for(team.olga).post(f"{URL}{request_id}/decision/", {"decision": "approve"}, format="json")
    [key] = jira.tickets
    jira.set_status(key, "done")
    assert sync_statuses() == 1
    req = _request(team.org, request_id)
    # Resolved in Jira, but only an import proves the grant: the request stays fulfilling.
    assert (req.ticket_state, req.status) == ("resolved", "fulfilling")
    trail = api_for(team.ada).get(f"{URL}{request_id}/").json()["trail"]
    assert trail[-1]["message"] == f"Ticket {key} is now resolved (was open)."


def test_standing_delegations_are_followed_when_assigning_and_deciding(team, api_for, member, client, mailoutbox,
                                                                       django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    dora = member("reviewer", email="dora@acme.test")
    request_id = _submit(api_for(team.ada), capture)
    # Olga delegates after the request was made: her stage, once it starts, goes to the end of her chain.
    with scope(team.org):
        Delegation.objects.create(organization=team.org, member=team.olga, delegate=dora,
                                  starts_on=timezone.localdate() - dt.timedelta(days=1))
    _guest_approves(client, mailoutbox, capture)
    stage = api_for(team.ada).get(f"{URL}{request_id}/").json()["approvals"][1]
    assert stage["approver"] == "dora@acme.test" and stage["note"] == "Standing delegation of olga@acme.test"
    assert [r["id"] for r in api_for(dora).get(URL, {"tab": "approve"}).json()["results"]] == [request_id]
    with capture(execute=True):
        assert api_for(dora).post(f"{URL}{request_id}/decision/", {"decision": "approve"},
                                  format="json").status_code == 200
    assert _request(team.org, request_id).status == "approved"


def test_a_delegate_decides_a_stage_assigned_before_the_delegation(team, api_for, member,
                                                                   django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    team.org.guest_reviewers_enabled = False  # stage 1 goes to the fallback, Alan
    team.org.save()
    dora = member("reviewer", email="dora@acme.test")
    request_id = _submit(api_for(team.ada), capture)
    with scope(team.org):
        Delegation.objects.create(organization=team.org, member=team.alan, delegate=dora,
                                  starts_on=timezone.localdate())
    assert [r["id"] for r in api_for(dora).get(URL, {"tab": "approve"}).json()["results"]] == [request_id]
    with capture(execute=True):
        response = api_for(dora).post(f"{URL}{request_id}/decision/", {"decision": "approve", "reason": "covering"},
                                      format="json")
    assert response.status_code == 200
    first = response.json()["approvals"][0]
    assert (first["approver"], first["decided_by_email"]) == ("alan@acme.test", "dora@acme.test")
    assert "for alan@acme.test" in response.json()["trail"][2]["message"]
