"""A tiny authoritative DNS server on 127.0.0.1 (dnslib) answering TXT queries from a dict."""

from __future__ import annotations

import socket

from dnslib import QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSServer


class _TxtResolver(BaseResolver):
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if request.q.qtype == QTYPE.TXT:
            for value in self.records.get(name, []):
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=60))
        return reply


class TxtDnsServer:
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._server = DNSServer(_TxtResolver(self.records), port=self.port, address="127.0.0.1")

    def start(self) -> TxtDnsServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
