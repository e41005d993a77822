"""Authentication backend with login throttling against password guessing."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

from .audit import client_ip

# Apps that may forbid passwords for an address (single sign-on enforced for its domain) register a check here in
# their AppConfig.ready(): the platform core cannot import them. A check returns why a password is refused for
# that e-mail address, or None.
_password_refusals: list = []


def password_refusal_register(check) -> None:
    if check not in _password_refusals:
        _password_refusals.append(check)


def password_refusal(email: str) -> str | None:
    """Why this address may not sign in, or start an account, with a password; None when it may."""
    for check in _password_refusals:
        reason = check(email)
        if reason:
            return reason
    return None


class LoginThrottled(PermissionDenied):
    pass


def _email(email: str) -> str:
    return (email or "").strip().lower()


def _keys(email: str, ip: str | None) -> dict[str, str]:
    email, ip = _email(email), ip or "unknown"
    return {
        "email": f"login-fail:email:{email}",  # failures for the address from anywhere
        "last": f"login-fail:last:{email}",  # when the address last failed (for the progressive delay)
        "pair": f"login-fail:pair:{email}:{ip}",  # failures for the address from this IP
        "ip": f"login-fail:ip:{ip}",  # failures from this IP for any address
        "known": f"login-ok:{email}:{ip}",  # the address signed in from this IP before
    }


def login_wait_seconds(email: str, ip: str | None) -> int:
    """Seconds before a password may be checked for `email` from `ip`; 0 when it may be checked now.

    Guessing from one IP is stopped hard: LOGIN_FAILURE_LIMIT failures for an address from one IP (or four
    times that for all addresses from one IP) lock that source for the window. Guessing one address from many
    IPs meets a delay that doubles with each failure (up to LOGIN_FAILURE_MAX_DELAY_SECONDS) instead of a lock,
    so nobody can lock a known address out by failing on purpose; an IP the address signed in from before
    is spared that delay."""
    limit, window = settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_WINDOW_SECONDS
    keys = _keys(email, ip)
    values = cache.get_many(list(keys.values()))
    if values.get(keys["pair"], 0) >= limit or (ip and values.get(keys["ip"], 0) >= limit * 4):
        return window
    failures = values.get(keys["email"], 0)
    if failures < limit or values.get(keys["known"]):
        return 0
    delay = min(2 ** (failures - limit), settings.LOGIN_FAILURE_MAX_DELAY_SECONDS)
    return max(0, math.ceil(values.get(keys["last"], 0) + delay - time.time()))


def login_is_throttled(email: str, ip: str | None) -> bool:
    return login_wait_seconds(email, ip) > 0


def login_failure_record(email: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    keys = _keys(email, ip)
    for name in ("email", "pair", "ip"):
        cache.add(keys[name], 0, timeout=window)
        try:
            cache.incr(keys[name])
        except ValueError:
            cache.set(keys[name], 1, timeout=window)
    cache.set(keys["last"], time.time(), timeout=window)


def login_success_record(email: str, ip: str | None) -> None:
    """A sign-in clears its own source's failures and remembers the IP as one the address uses."""
    keys = _keys(email, ip)
    cache.delete_many([keys["pair"]])
    cache.set(keys["known"], 1, timeout=settings.LOGIN_KNOWN_IP_SECONDS)


class ThrottledEmailBackend(ModelBackend):
    """Refuses to check passwords while an e-mail or IP is locked out after repeated failures."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        email = (username or kwargs.get("email") or "").strip().lower()
        ip = client_ip(request)
        if login_is_throttled(email, ip):
            raise LoginThrottled("Too many failed sign-in attempts. Try again in a few minutes.")
        return super().authenticate(request, username=email, password=password, **kwargs)
