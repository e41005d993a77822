"""Fixtures of the notifications area: a real SMTP server, fake Slack Web API and Teams webhook on 127.0.0.1,
and an active campaign with reviewers."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import socket
import threading

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone
from werkzeug import Response

from campaigns.models import CampaignStatus
from notifications.models import NotificationSettings
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..factories import CampaignFactory, IdentityFactory, ReviewItemFactory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        # Seconds to keep the client waiting for "250" after a message was received (it is kept either way).
        self.answer_late = 0.0
        # An SMTP reply (e.g. "451 4.7.1 Try again later") to give instead of accepting messages.
        self.refuse_with = ""

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {
            "to": list(envelope.rcpt_tos),
            "subject": str(parsed["subject"]),
            "message_id": str(parsed["message-id"]),
        }
        for part in parsed.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                parts[part.get_content_type()] = part.get_content()
        with self.lock:
            self.messages.append(parts)
        if self.answer_late:
            await asyncio.sleep(self.answer_late)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[dict]:
        return [m for m in self.messages if address in m["to"]]


@pytest.fixture
def mailbox(settings):
    """A real SMTP server on 127.0.0.1; Django's SMTP backend points at it."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield box
    controller.stop()


class FakeSlack:
    """Slack Web API: users.lookupByEmail and chat.postMessage, with a switchable failure."""

    TOKEN = "xoxb-1111-2222-abcdefghijklmnop"

    def __init__(self, server) -> None:
        self.server = server
        self.posts: list[dict] = []
        self.lookups: list[str] = []
        self.failure: tuple[int, dict, dict] | None = None
        server.expect_request("/api/users.lookupByEmail", method="POST").respond_with_handler(self._lookup)
        server.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(self._post)

    def _auth_error(self, request):
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return Response(
                json.dumps({"ok": False, "error": "invalid_auth"}), content_type="application/json"
            )
        if self.failure:
            status, body, headers = self.failure
            return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")
        return None

    def _lookup(self, request):
        error = self._auth_error(request)
        if error:
            return error
        address = request.form["email"]
        self.lookups.append(address)
        user_id = "U" + address.split("@")[0].upper().replace(".", "").replace("_", "")[:10]
        return Response(json.dumps({"ok": True, "user": {"id": user_id}}), content_type="application/json")

    def _post(self, request):
        error = self._auth_error(request)
        if error:
            return error
        payload = json.loads(request.get_data())
        self.posts.append(payload)
        body = {"ok": True, "channel": payload["channel"], "ts": f"1700000000.{len(self.posts):06d}"}
        return Response(json.dumps(body), content_type="application/json")

    def to(self, channel: str) -> list[dict]:
        return [p for p in self.posts if p["channel"] == channel]


class FakeTeams:
    def __init__(self, server) -> None:
        self.cards: list[dict] = []
        self.status = 202
        server.expect_request("/workflows/teams-hook", method="POST").respond_with_handler(self._post)
        self.url = server.url_for("/workflows/teams-hook")

    def _post(self, request):
        if self.status >= 400:
            return Response("failure", status=self.status)
        self.cards.append(json.loads(request.get_data()))
        return Response("", status=self.status)


@pytest.fixture
def slack(httpserver, settings):
    settings.SLACK_API_URL = httpserver.url_for("/api/")
    return FakeSlack(httpserver)


@pytest.fixture
def teams(httpserver, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = True
    return FakeTeams(httpserver)


@pytest.fixture
def channels_configured(org, slack, teams):
    with scopes_disabled():
        config, _ = NotificationSettings.objects.get_or_create(organization=org)
        config.slack_bot_token = FakeSlack.TOKEN
        config.slack_channel_id = "C0REVIEWS"
        config.teams_webhook_url = teams.url
        config.save()
    return config


@pytest.fixture
def people(member):
    """admin (campaign creator), three reviewers, and the manager of reviewer one."""
    return {
        "admin": member(Role.ADMIN),
        "rita": member(Role.REVIEWER, email="rita@acme.test"),
        "sam": member(Role.REVIEWER, email="sam@acme.test"),
        "done": member(Role.REVIEWER, email="done@acme.test"),
        "manager": member(Role.VIEWER, email="boss@acme.test"),
        "viewer": member(Role.VIEWER),
    }


LAUNCHED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def campaign(org, people):
    """Active since LAUNCHED_AT, due 14 days later: rita has 3 pending items, sam 1 pending and 1 decided,
    done has decided everything."""
    with scopes_disabled():
        manager_identity = IdentityFactory(organization=org, email="boss@acme.test", name="Boss")
        IdentityFactory(organization=org, email="rita@acme.test", name="Rita", manager=manager_identity)
        campaign = CampaignFactory(
            organization=org,
            title="Q1 access review",
            status=CampaignStatus.ACTIVE,
            launched_at=LAUNCHED_AT,
            snapshot_at=LAUNCHED_AT,
            due_date=(LAUNCHED_AT + dt.timedelta(days=14)).date(),
            created_by=people["admin"].user,
        )
        for reviewer, decisions in (("rita", ["", "", ""]), ("sam", ["", "approve"]), ("done", ["approve"])):
            for decision in decisions:
                ReviewItemFactory(
                    organization=org,
                    campaign=campaign,
                    reviewer=people[reviewer],
                    reviewer_email=people[reviewer].user.email,
                    decision=decision,
                    application_name="GitHub" if reviewer != "sam" else "Salesforce",
                    decided_at=timezone.now() if decision else None,
                )
        campaign.item_count = 6
        campaign.save()
    return campaign
