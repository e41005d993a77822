"""Delivery of one notification over e-mail, Slack or Microsoft Teams.

Every sender exposes ``send(message) -> str`` (a provider reference for the log) and raises
``ChannelTransientError`` when trying again later may succeed, or ``ChannelPermanentError`` when it cannot
succeed without someone changing the configuration or the recipient.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.utils import DNS_NAME
from django.template.loader import render_to_string
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from thalian import netguard
from thalian.text import single_line

EMAIL = "email"
SLACK = "slack"
TEAMS = "teams"
CHANNELS = (EMAIL, SLACK, TEAMS)

# Slack answers these when the token, the workspace or the addressee is wrong: retrying cannot help.
SLACK_PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "users_not_found",
        "user_not_found",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_arguments",
        "msg_too_long",
        "team_access_not_granted",
    }
)
SLACK_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class ChannelError(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChannelTransientError(ChannelError):
    """Delivery failed for a reason that may go away (rate limit, outage, timeout)."""


class ChannelPermanentError(ChannelError):
    """Delivery cannot succeed until the configuration or the recipient changes."""


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str
    action_url: str
    action_label: str
    # Empty for notices addressed to a channel as a whole (Slack channel, Teams webhook).
    recipient_email: str = ""
    # E-mail: the Message-ID every attempt of this notification carries, so a copy sent again after an
    # interrupted attempt is recognisably the same message (mail systems that de-duplicate drop it).
    message_id: str = ""


class Sender(Protocol):
    name: str

    def send(self, message: Message) -> str: ...


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def new_message_id() -> str:
    return make_msgid(domain=str(DNS_NAME))


class EmailSender:
    name = EMAIL

    def __init__(self, *, connection=None, from_email: str | None = None) -> None:
        self.connection = connection
        self.from_email = from_email or settings.DEFAULT_FROM_EMAIL

    def send(self, message: Message) -> str:
        if not message.recipient_email:
            raise ChannelPermanentError("E-mail needs a recipient address.")
        context = {"message": message}
        text = render_to_string("notifications/email/message.txt", context)
        html = render_to_string("notifications/email/message.html", context)
        message_id = message.message_id or new_message_id()
        email = EmailMultiAlternatives(
            subject=single_line(message.title),  # a header: a line break in it would refuse the whole message
            body=text,
            from_email=self.from_email,
            to=[message.recipient_email],
            connection=self.connection or get_connection(fail_silently=False),
            headers={"Message-ID": message_id},
        )
        email.attach_alternative(html, "text/html")
        try:
            email.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = f"Mail server refused {message.recipient_email}: {codes}"
            if codes and all(400 <= code < 500 for code in codes):
                raise ChannelTransientError(error) from exc
            raise ChannelPermanentError(error) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelPermanentError(f"Mail server rejected the credentials ({exc.smtp_code}).") from exc
        except smtplib.SMTPResponseException as exc:
            error = f"Mail server answered {exc.smtp_code}: {exc.smtp_error!r}"
            if 400 <= exc.smtp_code < 500 or exc.smtp_code < 0:
                raise ChannelTransientError(error) from exc
            raise ChannelPermanentError(error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelTransientError(f"Mail server unavailable: {exc}") from exc
        return message_id


def slack_blocks(message: Message) -> list[dict]:
    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    return [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{escape(message.title)}*\n{escape(message.body)}"},
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "open_task",
                    "text": {"type": "plain_text", "text": message.action_label[:75]},
                    "url": message.action_url,
                    "style": "primary",
                }
            ],
        },
    ]


class SlackSender:
    name = SLACK

    def __init__(
        self, *, token: str, channel_id: str = "", base_url: str | None = None, timeout: int = 10
    ) -> None:
        if not token:
            raise ChannelPermanentError("Slack is not configured: the bot token is missing.")
        # Retries belong to the delivery task (with backoff and a visible attempt count), not the client.
        kwargs = {"token": token, "timeout": timeout, "retry_handlers": []}
        if base_url:
            kwargs["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
        self.client = WebClient(**kwargs)
        self.channel_id = channel_id

    def send(self, message: Message) -> str:
        # slack_sdk connects through urllib: the API address is checked when it is resolved and again on connect.
        host = urlsplit(self.client.base_url).hostname or ""
        try:
            netguard.check_url(self.client.base_url)
            with netguard.checking_connections(host):
                return self._send(message)
        except netguard.AddressNotAllowed as exc:
            raise ChannelPermanentError(f"Slack API address refused: {exc}") from exc

    def _send(self, message: Message) -> str:
        try:
            if message.recipient_email:
                user = self.client.users_lookupByEmail(email=message.recipient_email)
                target = user["user"]["id"]
            elif self.channel_id:
                target = self.channel_id
            else:
                raise ChannelPermanentError("Slack is not configured: no channel for campaign notices.")
            response = self.client.chat_postMessage(
                channel=target,
                text=f"{message.title}: {message.body}",
                blocks=slack_blocks(message),
                unfurl_links=False,
            )
        except SlackApiError as exc:
            raise self._map_api_error(exc) from exc
        except SlackRequestError as exc:
            raise ChannelPermanentError(f"Slack request rejected: {exc}") from exc
        except netguard.AddressNotAllowed:
            raise
        except OSError as exc:
            if isinstance(getattr(exc, "reason", None), netguard.AddressNotAllowed):  # urllib wraps it
                raise exc.reason from exc
            raise ChannelTransientError(f"Slack unreachable: {exc}") from exc
        return str(response.get("ts", ""))

    @staticmethod
    def _map_api_error(exc: SlackApiError) -> ChannelError:
        response = exc.response
        error = ""
        if isinstance(response.data, dict):
            error = str(response.data.get("error", ""))
        headers = {key.lower(): value for key, value in (response.headers or {}).items()}
        retry_after = headers.get("retry-after")
        if isinstance(retry_after, list):
            retry_after = retry_after[0] if retry_after else None
        status = response.status_code
        text = f"Slack error {error or status}"
        if error in SLACK_PERMANENT_ERRORS:
            return ChannelPermanentError(text)
        if status == 429 or error in SLACK_TRANSIENT_ERRORS or status >= 500:
            return ChannelTransientError(text, retry_after=_parse_retry_after(retry_after))
        return ChannelPermanentError(text)


def teams_payload(message: Message) -> dict:
    body: list[dict] = [
        {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
        {"type": "TextBlock", "text": message.body, "wrap": True},
    ]
    if message.recipient_email:
        body.append(
            {"type": "TextBlock", "text": f"For {message.recipient_email}", "isSubtle": True, "wrap": True}
        )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": message.action_label, "url": message.action_url}],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


class TeamsSender:
    name = TEAMS

    def __init__(self, *, webhook_url: str, timeout: float = 10) -> None:
        if not webhook_url:
            raise ChannelPermanentError("Microsoft Teams is not configured: the webhook URL is missing.")
        self.webhook_url = webhook_url
        self.timeout = timeout

    def send(self, message: Message) -> str:
        try:
            response = netguard.session().post(self.webhook_url, json=teams_payload(message), timeout=self.timeout)
        except netguard.AddressNotAllowed as exc:
            raise ChannelPermanentError(f"Teams webhook refused: {exc}") from exc
        except requests.RequestException as exc:
            raise ChannelTransientError(f"Teams webhook unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response.headers.get("x-ms-workflow-run-id", "") or str(status)
        text = f"Teams webhook answered HTTP {status}"
        if status == 429 or status >= 500 or status == 408:
            raise ChannelTransientError(
                text, retry_after=_parse_retry_after(response.headers.get("Retry-After"))
            )
        raise ChannelPermanentError(text)
