"""Sign-in, throttling, password change and password reset."""

from __future__ import annotations

import pytest
from django.urls import reverse

from thalian.models import AuditEvent

from .conftest import link_in, path_of

pytestmark = pytest.mark.django_db

THROTTLED = "Too many failed sign-in attempts"


def _login(client, email, password):
    return client.post(reverse("login"), {"username": email, "password": password})


def test_sign_in_with_email_and_password_lands_in_the_organization(client, member, org):
    viewer = member("viewer")
    response = _login(client, "VIEWER@acme.test", "pw")
    assert response.status_code == 302
    assert client.get(response.url, follow=True).request["PATH_INFO"] == "/o/acme/"
    assert AuditEvent.objects.filter(organization=org, action="login", actor=viewer.user).exists()


def test_wrong_password_is_refused_and_audited(client, member, org):
    member("viewer")
    response = _login(client, "viewer@acme.test", "wrong")
    assert response.status_code == 200
    assert "do not match an account" in response.content.decode()
    event = AuditEvent.objects.get(organization=org, action="login_failed")
    assert event.details == {"email": "viewer@acme.test"} and event.ip_address == "127.0.0.1"


def test_five_failures_lock_the_address_and_the_right_password_is_then_refused(client, member, settings):
    assert settings.LOGIN_FAILURE_LIMIT == 5
    member("viewer")
    for attempt in range(1, 5):
        response = _login(client, "viewer@acme.test", f"guess-{attempt}")
        assert THROTTLED not in response.content.decode()
    fifth = _login(client, "viewer@acme.test", "guess-5")
    assert THROTTLED in fifth.content.decode()
    response = _login(client, "viewer@acme.test", "pw")
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another person is not locked out by it.
    member("auditor")
    assert _login(client, "auditor@acme.test", "pw").status_code == 302


def test_lock_out_ends_when_the_window_passes(client, member):
    from django.core.cache import cache

    member("viewer")
    for attempt in range(5):
        _login(client, "viewer@acme.test", f"guess-{attempt}")
    assert THROTTLED in _login(client, "viewer@acme.test", "pw").content.decode()
    cache.clear()  # what the expiry of the window does
    assert _login(client, "viewer@acme.test", "pw").status_code == 302


def test_password_change(client_for, member):
    viewer = member("viewer")
    client = client_for(viewer)
    page = client.get(reverse("password_change"))
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    bad = client.post(
        reverse("password_change"),
        {"old_password": "nope", "new_password1": "Sturdy-horse-42", "new_password2": "Sturdy-horse-42"},
    )
    assert bad.status_code == 200 and "old password was entered incorrectly" in bad.content.decode()
    response = client.post(
        reverse("password_change"),
        {"old_password": "pw", "new_password1": "Sturdy-horse-42", "new_password2": "Sturdy-horse-42"},
    )
    assert response.status_code == 302
    assert "Password changed" in client.get(response.url).content.decode()
    viewer.user.refresh_from_db()
    assert viewer.user.check_password("Sturdy-horse-42")
    assert AuditEvent.objects.filter(action="password_changed", actor=viewer.user).count() == 1


def test_password_reset_sends_an_email_whose_link_sets_a_new_password(client, member, mailoutbox):
    viewer = member("viewer")
    assert client.get(reverse("password_reset")).status_code == 200
    response = client.post(reverse("password_reset"), {"email": "viewer@acme.test"})
    assert response.status_code == 302
    assert "Check your e-mail" in client.get(response.url).content.decode()
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["viewer@acme.test"] and mail.subject == "Reset your Thalian password"
    link = link_in(mail.body)
    assert link.startswith("http://127.0.0.1:8000/accounts/reset/")

    form_page = client.get(path_of(link), follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.request["PATH_INFO"]
    done = client.post(set_url, {"new_password1": "Fresh-garden-77", "new_password2": "Fresh-garden-77"})
    assert done.status_code == 302
    assert "Your new password is set" in client.get(done.url).content.decode()
    viewer.user.refresh_from_db()
    assert viewer.user.check_password("Fresh-garden-77")
    # The link works once.
    assert "no longer valid" in client.get(path_of(link), follow=True).content.decode()
    assert AuditEvent.objects.filter(action="password_reset", actor=viewer.user).count() == 1
    client.logout()
    assert _login(client, "viewer@acme.test", "Fresh-garden-77").status_code == 302


def test_password_reset_for_an_unknown_address_sends_nothing_but_looks_the_same(client, mailoutbox, db):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.test"})
    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert mailoutbox == []


def test_organization_switch_goes_to_the_chosen_membership_only(client_for, member, outsider, org, other_org):
    both = member("viewer")
    from thalian.models import Membership

    Membership.objects.create(user=both.user, organization=other_org, role="admin")
    client = client_for(both)
    page = client.get(reverse("home"))
    assert page.status_code == 200 and "Choose an organization" in page.content.decode()
    response = client.get(reverse("home"), {"org": "/o/globex/"})
    assert response.status_code == 302 and response.url == "/o/globex/"
    assert client.get(reverse("home"), {"org": "acme"}).url == "/o/acme/"
    # Last organization used is remembered.
    client.get("/o/globex/")
    assert client.get(reverse("home")).url == "/o/globex/"
    # Only memberships: anything else is 404, never an open redirect.
    assert client.get(reverse("home"), {"org": "https://evil.example/"}).status_code == 404
    assert client.get(reverse("home"), {"org": "initech"}).status_code == 404


def test_reset_emails_to_one_address_are_limited_per_hour(client, member, mailoutbox):
    member("viewer")
    for _ in range(5):
        response = client.post(reverse("password_reset"), {"email": "viewer@acme.test"})
        assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert len(mailoutbox) == 3


def _login_from(client, ip, email, password):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_wrong_current_passwords_on_password_change_count_toward_the_lock_out(client_for, member, client):
    viewer = member("viewer")
    signed_in = client_for(viewer)
    for attempt in range(4):
        response = signed_in.post(
            reverse("password_change"),
            {"old_password": f"guess-{attempt}", "new_password1": "Sturdy-horse-42", "new_password2": "Sturdy-horse-42"},
        )
        assert "old password was entered incorrectly" in response.content.decode()
    fifth = signed_in.post(
        reverse("password_change"),
        {"old_password": "guess-5", "new_password1": "Sturdy-horse-42", "new_password2": "Sturdy-horse-42"},
    )
    assert THROTTLED in fifth.content.decode()
    right = signed_in.post(
        reverse("password_change"),
        {"old_password": "pw", "new_password1": "Sturdy-horse-42", "new_password2": "Sturdy-horse-42"},
    )
    assert right.status_code == 200 and THROTTLED in right.content.decode()
    viewer.user.refresh_from_db()
    assert viewer.user.check_password("pw")
    # The same budget as sign-in: guessing on one form does not reset the other.
    assert THROTTLED in _login(client, "viewer@acme.test", "pw").content.decode()
    assert AuditEvent.objects.filter(action="password_changed").count() == 0


def test_failing_on_purpose_from_other_ips_does_not_lock_out_a_known_address(client, member, settings):
    from django.test import Client

    member("viewer")
    # The owner signed in from their office before.
    office = Client()
    assert _login_from(office, "198.51.100.7", "viewer@acme.test", "pw").status_code == 302
    # Someone fails on purpose from many addresses.
    for n in range(30):
        _login_from(client, f"203.0.113.{n}", "viewer@acme.test", f"guess-{n}")
    # The owner still signs in from the office at once.
    assert _login_from(Client(), "198.51.100.7", "viewer@acme.test", "pw").status_code == 302


def test_guessing_from_many_ips_is_slowed_by_a_growing_delay(client, member, settings, time_machine):
    from thalian.auth import login_wait_seconds

    member("viewer")
    time_machine.move_to("2026-06-01 12:00:00", tick=False)
    clock = time_machine
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _login_from(client, f"203.0.113.{n}", "viewer@acme.test", f"guess-{n}")
    waits = []
    for n in range(4):
        wait = login_wait_seconds("viewer@acme.test", "192.0.2.50")
        waits.append(wait)
        refused = _login_from(client, f"198.18.0.{n}", "viewer@acme.test", "pw")  # even the right password
        assert refused.status_code == 200 and THROTTLED in refused.content.decode()
        clock.shift(wait)
        _login_from(client, f"198.18.1.{n}", "viewer@acme.test", f"again-{n}")
    assert waits == [1, 2, 4, 8]
    settings.LOGIN_FAILURE_MAX_DELAY_SECONDS = 5
    assert login_wait_seconds("viewer@acme.test", "192.0.2.50") == 5
    clock.shift(5)
    assert _login_from(client, "192.0.2.50", "viewer@acme.test", "pw").status_code == 302
