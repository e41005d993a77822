"""Members page: invitation by e-mail, accepting it, role changes, removal, and the super admin rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from thalian.models import ApiToken, Invitation, Membership, User
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .conftest import link_in, path_of

pytestmark = pytest.mark.django_db


def _invite(client, email, role, org_slug="acme"):
    return client.post(reverse("member_invite", args=[org_slug]), {"email": email, "role": role})


def test_admin_invites_a_new_person_who_creates_an_account_and_joins(
    client_for, member, org, mailoutbox, django_capture_on_commit_callbacks, audit_actions
):
    admin = member(Role.ADMIN)
    client = client_for(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client, "New.Person@Example.test", Role.SECURITY_ANALYST)
    assert response.status_code == 302
    page = client.get(reverse("member_list", args=["acme"]))
    assert "Invitation sent to new.person@example.test" in page.content.decode()
    assert "new.person@example.test" in page.content.decode()  # pending invitations table

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["new.person@example.test"]
    assert "Acme" in mail.subject
    link = link_in(mail.body)
    assert link.startswith("http://127.0.0.1:8000/invitations/")
    raw = link.rstrip("/").rsplit("/", 1)[1]
    with scopes_disabled():
        assert not Invitation.objects.filter(token_hash=raw).exists()  # only the hash is stored

    client.logout()
    accept_page = client.get(path_of(link))
    assert accept_page.status_code == 200
    assert "Security analyst" in accept_page.content.decode()
    response = client.post(
        path_of(link), {"name": "New Person", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"}
    )
    assert response.status_code == 302 and response.url == "/o/acme/"
    user = User.objects.get(email="new.person@example.test")
    assert user.check_password("a-long-passphrase-9") and user.name == "New Person"
    assert Membership.objects.get(user=user, organization=org).role == Role.SECURITY_ANALYST
    # The new member is signed in and lands in the organization.
    assert client.get("/o/acme/").status_code == 200
    # The link works once.
    again = client.get(path_of(link))
    assert again.status_code == 410 and "already been used" in again.content.decode()
    actions = audit_actions(org)
    assert ("member_invited", "admin@acme.test") in actions
    assert ("member_joined", "new.person@example.test") in actions


def test_invitation_attaches_an_existing_user_after_sign_in(
    client, client_for, member, org, outsider, mailoutbox, django_capture_on_commit_callbacks
):
    admin = member(Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(client_for(admin), "admin@globex.test", Role.AUDITOR)
    link = path_of(link_in(mailoutbox[0].body))
    client.logout()
    page = client.get(link)
    assert "Sign in to accept" in page.content.decode()
    # Without signing in nobody can take over the existing account.
    response = client.post(link, {"password1": "x-long-passphrase-1", "password2": "x-long-passphrase-1"})
    assert response.status_code == 400
    assert not Membership.objects.filter(user=outsider.user, organization=org).exists()

    client.force_login(outsider.user)
    response = client.post(link)
    assert response.status_code == 302
    assert Membership.objects.get(user=outsider.user, organization=org).role == Role.AUDITOR
    assert outsider.user.check_password("pw")  # password untouched
    # Both organizations are now reachable: the switcher offers both.
    page = client.get("/o/acme/").content.decode()
    assert "Globex" in page and "Acme" in page


def test_invitation_for_someone_else_is_refused_to_the_signed_in_user(
    client_for, member, org, mailoutbox, django_capture_on_commit_callbacks
):
    admin = member(Role.ADMIN)
    viewer = member(Role.VIEWER)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(client_for(admin), "someone@else.test", Role.ADMIN)
    link = path_of(link_in(mailoutbox[0].body))
    client = client_for(viewer)
    assert "This invitation is for someone@else.test" in client.get(link).content.decode()
    client.post(link)
    assert Membership.objects.get(pk=viewer.pk).role == Role.VIEWER
    assert not User.objects.filter(email="someone@else.test").exists()


def test_expired_and_withdrawn_invitations_do_not_work(client_for, member, org, mailoutbox,
                                                       django_capture_on_commit_callbacks):
    admin = member(Role.ADMIN)
    client = client_for(admin)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(client, "late@example.test", Role.VIEWER)
        _invite(client, "withdrawn@example.test", Role.VIEWER)
    late, withdrawn = (path_of(link_in(m.body)) for m in mailoutbox)
    with scopes_disabled():
        Invitation.objects.filter(email="late@example.test").update(expires_at=timezone.now() - dt.timedelta(minutes=1))
        inv = Invitation.objects.get(email="withdrawn@example.test")
    client.post(reverse("invitation_revoke", args=["acme", inv.pk]))
    client.logout()
    assert "expired" in client.get(late).content.decode()
    assert "withdrawn" in client.get(withdrawn).content.decode()
    response = client.post(late, {"password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"})
    assert response.status_code == 410
    assert not User.objects.filter(email__in=["late@example.test", "withdrawn@example.test"]).exists()
    assert client.get("/invitations/inv_not-a-real-token/").status_code == 404


def test_admin_cannot_invite_a_super_admin(client_for, member, mailoutbox, django_capture_on_commit_callbacks):
    admin = member(Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client_for(admin), "boss@example.test", Role.SUPER_ADMIN)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    with scopes_disabled():
        assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_super_admin_can_invite_a_super_admin(client_for, member, mailoutbox, django_capture_on_commit_callbacks):
    boss = member(Role.SUPER_ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        assert _invite(client_for(boss), "boss2@example.test", Role.SUPER_ADMIN).status_code == 302
    assert len(mailoutbox) == 1


def test_inviting_an_existing_member_explains_and_sends_nothing(client_for, member, mailoutbox,
                                                               django_capture_on_commit_callbacks):
    admin = member(Role.ADMIN)
    member(Role.VIEWER)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client_for(admin), "viewer@acme.test", Role.ADMIN)
    assert response.status_code == 400
    assert "viewer@acme.test is already a member of Acme" in response.content.decode()
    assert mailoutbox == []


def test_admin_changes_a_role_and_it_is_audited(client_for, member, org, audit_actions):
    admin = member(Role.ADMIN)
    viewer = member(Role.VIEWER)
    client = client_for(admin)
    response = client.post(reverse("member_role", args=["acme", viewer.pk]), {f"m{viewer.pk}-role": "auditor"})
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.role == Role.AUDITOR
    assert ("member_role_changed", "admin@acme.test") in audit_actions(org)
    assert "viewer@acme.test is now Auditor" in client.get(reverse("member_list", args=["acme"])).content.decode()


def test_admin_cannot_grant_super_admin_nor_touch_a_super_admin(client_for, member):
    admin = member(Role.ADMIN)
    viewer = member(Role.VIEWER)
    boss = member(Role.SUPER_ADMIN)
    client = client_for(admin)
    client.post(reverse("member_role", args=["acme", viewer.pk]), {f"m{viewer.pk}-role": "super_admin"})
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER
    client.post(reverse("member_role", args=["acme", boss.pk]), {f"m{boss.pk}-role": "viewer"})
    client.post(reverse("member_remove", args=["acme", boss.pk]))
    boss.refresh_from_db()
    assert boss.role == Role.SUPER_ADMIN
    page = client.get(reverse("member_list", args=["acme"])).content.decode()
    assert "Only a super admin can change or remove a super admin" in page
    assert 'value="super_admin"' not in page  # an admin is never offered the role


def test_last_super_admin_cannot_be_demoted_or_removed(client_for, member):
    boss = member(Role.SUPER_ADMIN)
    client = client_for(boss)
    client.post(reverse("member_role", args=["acme", boss.pk]), {f"m{boss.pk}-role": "admin"})
    client.post(reverse("member_remove", args=["acme", boss.pk]))
    boss.refresh_from_db()
    assert boss.role == Role.SUPER_ADMIN
    assert "last super admin" in client.get(reverse("member_list", args=["acme"])).content.decode()


def test_one_of_two_super_admins_can_step_down(client_for, member):
    boss = member(Role.SUPER_ADMIN)
    second = member(Role.SUPER_ADMIN, email="second@acme.test")
    client = client_for(boss)
    client.post(reverse("member_role", args=["acme", boss.pk]), {f"m{boss.pk}-role": "admin"})
    boss.refresh_from_db()
    assert boss.role == Role.ADMIN
    client = client_for(second)
    client.post(reverse("member_remove", args=["acme", second.pk]))
    second.refresh_from_db()
    assert second.role == Role.SUPER_ADMIN  # now the last one


def test_removing_a_member_ends_their_access_and_their_tokens(client_for, member, api_for, org, audit_actions):
    admin = member(Role.ADMIN)
    analyst = member(Role.SECURITY_ANALYST)
    api = api_for(analyst)
    assert api.get("/api/v1/orgs/acme/me/").status_code == 200
    response = client_for(admin).post(reverse("member_remove", args=["acme", analyst.pk]))
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=analyst.pk).exists()
    with scopes_disabled():
        assert not ApiToken.objects.filter(membership_id=analyst.pk).exists()
    assert api.get("/api/v1/orgs/acme/me/").status_code == 401
    client = client_for(analyst)
    assert client.get("/o/acme/").status_code == 404
    assert ("member_removed", "admin@acme.test") in audit_actions(org)


def test_members_page_lists_people_with_constant_queries(client_for, member, django_assert_max_num_queries):
    admin = member(Role.ADMIN)
    for i in range(3):
        member(Role.VIEWER, email=f"v{i}@acme.test")
    client = client_for(admin)
    client.get(reverse("member_list", args=["acme"]))
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("member_list", args=["acme"]))
    baseline = len(few.captured_queries)
    for i in range(3, 30):
        member(Role.VIEWER, email=f"v{i}@acme.test")
    with django_assert_max_num_queries(baseline):
        page = client.get(reverse("member_list", args=["acme"])).content.decode()
    assert "v29@acme.test" in page


def test_when_the_mail_server_is_down_the_invitation_is_not_saved_and_the_admin_is_told(client_for, member,
                                                                                     settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    response = _invite(client_for(member(Role.ADMIN)), "new@example.test", Role.VIEWER)
    assert response.status_code == 400
    assert "could not be sent" in response.content.decode() and "Nothing was saved" in response.content.decode()
    with scopes_disabled():
        assert not Invitation.objects.exists()


def test_invitation_is_delivered_over_smtp_and_its_link_works(client_for, member, org, smtp_inbox, client):
    response = _invite(client_for(member(Role.ADMIN)), "smtp.person@example.test", Role.REVIEWER)
    assert response.status_code == 302
    assert len(smtp_inbox.messages) == 1
    message = smtp_inbox.messages[0]
    assert message["To"] == "smtp.person@example.test"
    assert message["Subject"] == "You are invited to Acme on Thalian"
    link = path_of(link_in(message.get_content()))
    client.logout()
    client.post(link, {"password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"})
    assert Membership.objects.get(user__email="smtp.person@example.test", organization=org).role == Role.REVIEWER


def test_removing_a_campaigns_fallback_reviewer_names_the_campaigns_and_keeps_the_member(
    org, client_for, api_for, member
):
    from tests.factories import CampaignFactory

    admin, fallback = member(Role.ADMIN), member(Role.SECURITY_ANALYST, email="fallback@acme.test")
    CampaignFactory(organization=org, title="Q3 access review", fallback_reviewer=fallback)
    CampaignFactory(organization=org, title="Vendor access", fallback_reviewer=fallback)
    client = client_for(admin)
    response = client.post(reverse("member_remove", args=["acme", fallback.pk]), follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "fallback reviewer of 2 campaigns" in page and "Q3 access review" in page and "Vendor access" in page
    response = api_for(admin).delete(f"/api/v1/orgs/acme/members/{fallback.pk}/")
    assert response.status_code == 409
    assert response.json()["campaigns"] == ["Q3 access review", "Vendor access"]
    assert "choose another fallback reviewer" in response.json()["detail"]
    assert Membership.objects.filter(pk=fallback.pk).exists()
