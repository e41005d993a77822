"""Outbound connections to addresses someone typed in: ITSM and SCIM base URLs, Teams webhooks, the Slack API URL.

An organization admin chooses those URLs, so without a guard the server would connect wherever they point,
including its own loopback, the private network and the cloud metadata service, and report back what it found
(a port scanner driven through the ticket log). Addresses that are not public internet addresses are refused:

- when the URL is saved (``check_url``), for literal addresses and names that resolve to such addresses, and
- when the connection is made, after DNS resolution: ``GuardedAdapter`` for requests sessions (ITSM, SCIM,
  Teams) connects to the address it checked, and ``checking_connections()`` checks every socket a client opens
  itself (Slack), so a name that resolves elsewhere a second time (DNS rebinding) is still refused.

``ALLOWED_INTERNAL_HOSTS`` (environment, comma-separated) names the exceptions: a host name (the name as
written in the URL, trusted whatever it resolves to), an IP address, or a network in CIDR notation. Only what is
listed is allowed: listing 127.0.0.1 does not allow 127.0.0.2.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressNotAllowed(requests.exceptions.ConnectionError):
    """The host is, or resolves to, an address outbound connections may not reach."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _allowed() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in getattr(settings, "ALLOWED_INTERNAL_HOSTS", []):
        entry = entry.strip().strip("[]").lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public internet address ("loopback", "private", ...), or None when it is one."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def _refusal(host: str, ip: IPAddress, kind: str) -> AddressNotAllowed:
    shown = host if host == str(ip) else f"{host} ({ip})"
    return AddressNotAllowed(
        f"Connections to {shown} are not allowed: it is a {kind} address. An operator can allow an internal "
        "host with the ALLOWED_INTERNAL_HOSTS environment variable."
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_addresses(host: str, addresses: list[str]) -> None:
    """Refuse when any address `host` resolved to is internal and not listed in ALLOWED_INTERNAL_HOSTS."""
    names, networks = _allowed()
    if host.lower().rstrip(".") in names:
        return
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = address_kind(ip)
        if kind and not any(ip in network for network in networks):
            raise _refusal(host, ip, kind)


def resolve(host: str, port: int | None) -> list[str]:
    """Every address `host` resolves to (a literal address is itself); socket.gaierror when it does not."""
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_address(host: str, port: int | None) -> str:
    """Resolve `host`, refuse internal addresses, and return the address to connect to."""
    addresses = resolve(host, port)
    check_addresses(host, addresses)
    return addresses[0]


def check_url(url: str) -> None:
    """Refuse a URL whose host is or resolves to an internal address. A name that does not resolve (yet) passes:
    the connection is checked again when it is made."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return
    try:
        port = parts.port
    except ValueError:
        port = None
    try:
        checked_address(host, port)
    except socket.gaierror:
        return


# Clients that open sockets themselves (slack_sdk through urllib) are checked where the socket connects: a
# Python audit hook sees the address of every socket.connect, after resolution, while checking_connections() is
# active in the calling context.
_checking: contextvars.ContextVar[str | None] = contextvars.ContextVar("netguard_checking", default=None)
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    if event != "socket.connect":
        return
    host = _checking.get()
    if host is None:
        return
    sock, address = args
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        check_addresses(host, [address[0]])


@contextlib.contextmanager
def checking_connections(host: str) -> Iterator[None]:
    """Refuse, at connect time, any socket this context opens to an internal address not allowed for `host`."""
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True
    token = _checking.set(host)
    try:
        yield
    finally:
        _checking.reset(token)


class _GuardedConnectionMixin:
    """Connects to the address it checked; TLS still verifies the certificate against the host name."""

    def _new_conn(self):
        try:
            address = checked_address(self._dns_host, self.port)
        except AddressNotAllowed as exc:
            raise NewConnectionError(self, str(exc)) from exc
        except (socket.gaierror, UnicodeError):
            return super()._new_conn()  # urllib3 reports the resolution failure in its own words
        original, self._dns_host = self._dns_host, address
        try:
            return super()._new_conn()
        finally:
            self._dns_host = original


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests transport adapter that refuses internal addresses before sending (a clear error, also when a
    proxy would make the connection) and pins each new connection to the address it checked."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def send(self, request, *args, **kwargs):
        try:
            check_url(request.url)
        except AddressNotAllowed as exc:
            exc.request = request
            raise
        return super().send(request, *args, **kwargs)


def guard_session(session: requests.Session, adapter: HTTPAdapter | None = None) -> requests.Session:
    """Mount a guarded adapter (or `adapter`, which must be a GuardedAdapter) for http and https."""
    adapter = adapter or GuardedAdapter()
    if not isinstance(adapter, GuardedAdapter):
        raise TypeError("outbound sessions need a GuardedAdapter")
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def session() -> requests.Session:
    """A requests session for URLs someone typed in."""
    return guard_session(requests.Session())
