import email
import email.policy
import json
import socket
import time

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings
from werkzeug import Response

from notifications.channels import (
    ChannelPermanentError,
    ChannelTransientError,
    EmailSender,
    Message,
    SlackSender,
    TeamsSender,
)

TASK_URL = "https://thalian.example/o/acme/reviews/tasks/?campaign=Q3"
MESSAGE = Message(
    event="review_assigned",
    title="Access review assigned: Q3 review",
    body="You have 12 access items to review in Q3 review, due 30 Sep 2026.",
    action_url=TASK_URL,
    action_label="Open my tasks",
    recipient_email="rita@acme.example",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordingHandler:
    def __init__(self, rcpt_reply: str | None = None) -> None:
        self.envelopes = []
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    servers = []

    def start(rcpt_reply: str | None = None):
        handler = RecordingHandler(rcpt_reply)
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        servers.append(controller)
        return handler, port

    yield start
    for controller in servers:
        controller.stop()


def _smtp_settings(port: int):
    return override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_TIMEOUT=5,
        DEFAULT_FROM_EMAIL="Thalian <reviews@thalian.example>",
    )


def _parts(raw: bytes) -> dict[str, str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    parts = {"subject": str(parsed["subject"]), "to": str(parsed["to"])}
    for part in parsed.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            parts[part.get_content_type()] = part.get_content()
    return parts


def test_email_delivers_html_and_text_with_task_link_to_reviewer(smtp_server):
    handler, port = smtp_server()
    with _smtp_settings(port):
        reference = EmailSender().send(MESSAGE)

    assert reference.startswith("<")
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.rcpt_tos == ["rita@acme.example"]
    assert envelope.mail_from == "reviews@thalian.example"
    parts = _parts(envelope.content)
    assert parts["subject"] == "Access review assigned: Q3 review"
    assert parts["to"] == "rita@acme.example"
    assert TASK_URL in parts["text/plain"]
    assert "12 access items" in parts["text/plain"]
    assert f'href="{TASK_URL.replace("&", "&amp;")}"' in parts["text/html"]
    assert "Open my tasks" in parts["text/html"]


def test_email_with_a_line_break_in_its_title_is_delivered_with_a_one_line_subject(smtp_server):
    handler, port = smtp_server()
    message = Message("campaign_launched", "Access review assigned: Q3\r\nreview", "12 items", TASK_URL, "Open",
                      "rita@acme.example")
    with _smtp_settings(port):
        EmailSender().send(message)
    assert _parts(handler.envelopes[0].content)["subject"] == "Access review assigned: Q3 review"


def test_email_escapes_markup_in_html_part(smtp_server):
    handler, port = smtp_server()
    message = Message(
        event="campaign_completed",
        title="Campaign <Q3> completed",
        body="Owner said <script>alert(1)</script>",
        action_url=TASK_URL,
        action_label="Open campaign",
        recipient_email="rita@acme.example",
    )
    with _smtp_settings(port):
        EmailSender().send(message)

    parts = _parts(handler.envelopes[0].content)
    assert "<script>" not in parts["text/html"]
    assert "&lt;script&gt;" in parts["text/html"]
    assert "<script>alert(1)</script>" in parts["text/plain"]


def test_email_rejected_recipient_is_permanent(smtp_server):
    handler, port = smtp_server(rcpt_reply="550 5.1.1 No such user")
    with _smtp_settings(port), pytest.raises(ChannelPermanentError, match="550"):
        EmailSender().send(MESSAGE)
    assert handler.envelopes == []


def test_email_greylisted_recipient_is_transient(smtp_server):
    _, port = smtp_server(rcpt_reply="451 4.7.1 Try again later")
    with _smtp_settings(port), pytest.raises(ChannelTransientError, match="451"):
        EmailSender().send(MESSAGE)


def test_email_unreachable_server_is_transient():
    with _smtp_settings(_free_port()), pytest.raises(ChannelTransientError, match="unavailable"):
        EmailSender().send(MESSAGE)


def test_email_without_recipient_is_permanent():
    with pytest.raises(ChannelPermanentError, match="recipient"):
        EmailSender().send(Message("campaign_completed", "t", "b", TASK_URL, "Open", ""))


def _slack(httpserver, **kwargs) -> SlackSender:
    return SlackSender(token="xoxb-test-token", base_url=httpserver.url_for("/api/"), **kwargs)


def test_slack_direct_message_looks_up_member_by_email_and_posts_blocks(httpserver):
    httpserver.expect_ordered_request(
        "/api/users.lookupByEmail", method="POST", headers={"Authorization": "Bearer xoxb-test-token"}
    ).respond_with_json({"ok": True, "user": {"id": "U0RITA"}})
    httpserver.expect_ordered_request(
        "/api/chat.postMessage", method="POST", headers={"Authorization": "Bearer xoxb-test-token"}
    ).respond_with_json({"ok": True, "channel": "D0DM", "ts": "1700000000.000100"})

    reference = _slack(httpserver).send(MESSAGE)

    assert reference == "1700000000.000100"
    (lookup, _), (post, _) = httpserver.log
    assert lookup.form["email"] == "rita@acme.example"
    payload = json.loads(post.get_data())
    assert payload["channel"] == "U0RITA"
    assert "Access review assigned: Q3 review" in payload["text"]
    section, actions = payload["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "*Access review assigned: Q3 review*" in section["text"]["text"]
    assert "12 access items" in section["text"]["text"]
    button = actions["elements"][0]
    assert actions["type"] == "actions"
    assert button["type"] == "button"
    assert button["url"] == TASK_URL
    assert button["text"] == {"type": "plain_text", "text": "Open my tasks"}


def test_slack_campaign_notice_goes_to_configured_channel_without_lookup(httpserver):
    httpserver.expect_oneshot_request("/api/chat.postMessage", method="POST").respond_with_json(
        {"ok": True, "channel": "C0REVIEWS", "ts": "1.2"}
    )
    notice = Message("campaign_completed", "Q3 review completed", "All 40 items decided.", TASK_URL, "Open")

    _slack(httpserver, channel_id="C0REVIEWS").send(notice)

    assert len(httpserver.log) == 1
    payload = json.loads(httpserver.log[0][0].get_data())
    assert payload["channel"] == "C0REVIEWS"
    assert [path for path in (r.path for r, _ in httpserver.log)] == ["/api/chat.postMessage"]


def test_slack_escapes_control_characters_in_text(httpserver):
    httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": True, "ts": "1"})
    notice = Message("campaign_completed", "A & B <!channel>", "x", TASK_URL, "Open")
    _slack(httpserver, channel_id="C1").send(notice)
    text = json.loads(httpserver.log[0][0].get_data())["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text
    assert "A &amp; B &lt;!channel&gt;" in text


def test_slack_rate_limit_is_transient_with_retry_after(httpserver):
    httpserver.expect_request("/api/users.lookupByEmail").respond_with_json(
        {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "30"}
    )
    with pytest.raises(ChannelTransientError) as info:
        _slack(httpserver).send(MESSAGE)
    assert info.value.retry_after == 30
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("users.lookupByEmail", "invalid_auth"),
        ("users.lookupByEmail", "not_authed"),
        ("users.lookupByEmail", "users_not_found"),
        ("chat.postMessage", "channel_not_found"),
    ],
)
def test_slack_configuration_errors_are_permanent(httpserver, method, error):
    httpserver.expect_request("/api/users.lookupByEmail").respond_with_json(
        {"ok": True, "user": {"id": "U1"}}
    )
    if method == "users.lookupByEmail":
        httpserver.clear_all_handlers()
        httpserver.expect_request("/api/users.lookupByEmail").respond_with_json({"ok": False, "error": error})
    else:
        httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": False, "error": error})
    with pytest.raises(ChannelPermanentError, match=error):
        _slack(httpserver).send(MESSAGE)


def test_slack_server_error_is_transient(httpserver):
    httpserver.expect_request("/api/users.lookupByEmail").respond_with_data("upstream failure", status=503)
    with pytest.raises(ChannelTransientError):
        _slack(httpserver).send(MESSAGE)


def test_slack_unreachable_is_transient():
    sender = SlackSender(token="xoxb-test-token", base_url=f"http://127.0.0.1:{_free_port()}/api/")
    with pytest.raises(ChannelTransientError, match="unreachable"):
        sender.send(MESSAGE)


def test_slack_without_token_is_permanent():
    with pytest.raises(ChannelPermanentError, match="token"):
        SlackSender(token="")


def test_teams_posts_adaptive_card_with_open_url_action(httpserver):
    httpserver.expect_oneshot_request(
        "/workflows/hook", method="POST", headers={"Content-Type": "application/json"}
    ).respond_with_data("", status=202)

    TeamsSender(webhook_url=httpserver.url_for("/workflows/hook")).send(MESSAGE)

    payload = json.loads(httpserver.log[0][0].get_data())
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    texts = [block["text"] for block in card["body"] if block["type"] == "TextBlock"]
    assert texts[0] == "Access review assigned: Q3 review"
    assert "12 access items" in texts[1]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open my tasks", "url": TASK_URL}]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ChannelTransientError),
        (502, ChannelTransientError),
        (429, ChannelTransientError),
        (400, ChannelPermanentError),
        (404, ChannelPermanentError),
        (401, ChannelPermanentError),
    ],
)
def test_teams_status_mapping(httpserver, status, error):
    httpserver.expect_request("/hook").respond_with_data("nope", status=status)
    with pytest.raises(error, match=str(status)):
        TeamsSender(webhook_url=httpserver.url_for("/hook")).send(MESSAGE)


def test_teams_timeout_is_transient(httpserver):
    def slow(request):
        time.sleep(1.5)
        return Response("", status=202)

    httpserver.expect_request("/hook").respond_with_handler(slow)
    with pytest.raises(ChannelTransientError, match="Timeout"):
        TeamsSender(webhook_url=httpserver.url_for("/hook"), timeout=0.5).send(MESSAGE)


def test_teams_without_webhook_is_permanent():
    with pytest.raises(ChannelPermanentError, match="webhook"):
        TeamsSender(webhook_url="")
