"""Authentication backend with login throttling against password guessing."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

from .audit import client_ip


class LoginThrottled(PermissionDenied):
    pass


def _keys(email: str, ip: str | None) -> list[str]:
    keys = [f"login-fail:email:{(email or '').strip().lower()}"]
    if ip:
        keys.append(f"login-fail:ip:{ip}")
    return keys


def login_is_throttled(email: str, ip: str | None) -> bool:
    limit = settings.LOGIN_FAILURE_LIMIT
    # The per-IP budget is wider so one office behind NAT is not locked out by one person.
    counts = cache.get_many(_keys(email, ip))
    email_count = counts.get(_keys(email, None)[0], 0)
    ip_count = counts.get(f"login-fail:ip:{ip}", 0) if ip else 0
    return email_count >= limit or ip_count >= limit * 4


def login_failure_record(email: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key in _keys(email, ip):
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=window)


def login_failures_clear(email: str) -> None:
    cache.delete(_keys(email, None)[0])


class ThrottledEmailBackend(ModelBackend):
    """Refuses to check passwords while an e-mail or IP is locked out after repeated failures."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        email = (username or kwargs.get("email") or "").strip().lower()
        ip = client_ip(request)
        if login_is_throttled(email, ip):
            raise LoginThrottled("Too many failed sign-in attempts. Try again in a few minutes.")
        return super().authenticate(request, username=email, password=password, **kwargs)
