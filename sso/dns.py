"""TXT lookups for domain verification (dnspython). SSO_DNS_NAMESERVERS picks the servers asked; services
accept any `resolve(name) -> list[str]` instead, so another resolver can be injected."""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.resolver
from django.conf import settings

Resolve = Callable[[str], list[str]]


class DnsLookupError(Exception):
    pass


def _resolver() -> dns.resolver.Resolver:
    if not settings.SSO_DNS_NAMESERVERS:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    servers, ports = [], {}
    for entry in settings.SSO_DNS_NAMESERVERS:
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        servers.append(host)
        if port:
            ports[host] = int(port)
    resolver.nameservers = servers
    resolver.nameserver_ports = ports
    return resolver


def txt_records(name: str) -> list[str]:
    resolver = _resolver()
    resolver.lifetime = 5.0
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise DnsLookupError(f"No DNS server answered for {name}; try again later.") from None
    except dns.exception.DNSException as exc:
        raise DnsLookupError(f"The DNS lookup of {name} failed: {exc.__class__.__name__}.") from None
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]
