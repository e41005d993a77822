"""Outbound requests to identity providers: https only in production, timeouts, and clear messages."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from django.conf import settings


class FetchError(Exception):
    """A discovery document, key set or metadata could not be fetched; the message says why."""


def check_url(url: str, *, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FetchError(f"The {what} must be an absolute https:// address, not {url!r}.")
    if parts.scheme == "http" and not settings.ALLOW_INSECURE_HTTP_INTEGRATIONS:
        raise FetchError(f"The {what} must use https:// ({url}).")


def fetch(url: str, *, what: str, method: str = "GET", **kwargs) -> requests.Response:
    check_url(url, what=what)
    try:
        response = requests.request(
            method, url, timeout=settings.SSO_HTTP_TIMEOUT_SECONDS, allow_redirects=False, **kwargs
        )
    except requests.Timeout:
        raise FetchError(f"The {what} at {url} did not answer within {settings.SSO_HTTP_TIMEOUT_SECONDS:g} seconds.") from None
    except requests.RequestException as exc:
        raise FetchError(f"The {what} at {url} could not be reached: {exc.__class__.__name__}.") from None
    if response.status_code >= 400:
        raise FetchError(f"The {what} at {url} answered HTTP {response.status_code}.")
    if response.is_redirect:
        raise FetchError(f"The {what} at {url} redirects to {response.headers.get('Location')}; enter that address.")
    return response


def fetch_json(url: str, *, what: str, **kwargs) -> dict:
    response = fetch(url, what=what, **kwargs)
    try:
        data = response.json()
    except ValueError:
        raise FetchError(f"The {what} at {url} is not JSON.") from None
    if not isinstance(data, dict):
        raise FetchError(f"The {what} at {url} is not a JSON object.")
    return data
