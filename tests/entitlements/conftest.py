"""Fixtures of the inventory tests: a real SCIM 2.0 service provider (scim2-server) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class ScimTestServer:
    base_url: str
    token: str
    users: dict[str, str] = field(default_factory=dict)

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            f"{self.base_url}/{endpoint}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def add_user(
        self,
        user_name: str,
        *,
        email: str | None = None,
        given: str = "",
        family: str = "",
        active: bool = True,
        external_id: str | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "active": active,
            "name": {"givenName": given, "familyName": family},
        }
        if email:
            body["emails"] = [{"value": email, "type": "work", "primary": True}]
        if external_id:
            body["externalId"] = external_id
        user_id = self._post("Users", body)["id"]
        self.users[user_name] = user_id
        return user_id

    def add_group(self, display_name: str, member_user_names: list[str]) -> str:
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": display_name,
            "members": [{"value": self.users[name], "type": "User"} for name in member_user_names],
        }
        return self._post("Groups", body)["id"]


@contextmanager
def run_scim_server(*, token: str = "scim-secret-token", max_results: int = 1000) -> Iterator[ScimTestServer]:
    config = load_default_service_provider_config()
    config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    config.filter.max_results = max_results
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    app = BearerTokenApplication(
        InMemoryStorage(), provider, service=ScimService(provider, secret="test-cursor-secret"), bearer_tokens=[token]
    )
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ScimTestServer(base_url=f"http://127.0.0.1:{server.server_port}/v2", token=token)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def scim_server():
    """Start SCIM providers on 127.0.0.1: `scim_server(max_results=4)` gives a running one."""
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(run_scim_server(**kwargs))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run_import(org):
    """run_import(kind, text, mode="merge", organization=org) -> SyncRun; raises ImportValidationError."""
    import io

    from entitlements.services import inventory_import
    from thalian.tenancy import scope

    def do(kind: str, text: str | bytes, mode: str = "merge", organization=None):
        organization = organization or org
        data = text.encode() if isinstance(text, str) else text
        with scope(organization):
            return inventory_import(
                organization=organization, kind=kind, stream=io.BytesIO(data), mode=mode, file_name=f"{kind}.csv"
            )

    return do


IDENTITIES_CSV = (
    "email,name,department,manager_email,kind,status,title\n"
    "boss@acme.test,Big Boss,Executive,,human,active,CEO\n"
    "ann@acme.test,Ann Archer,Engineering,boss@acme.test,human,active,Engineer\n"
    "bob@acme.test,Bob Baker,Sales,boss@acme.test,human,terminated,Rep\n"
    "deploy-bot@acme.test,Deploy bot,Engineering,ann@acme.test,service_account,active,\n"
)
APPLICATIONS_CSV = (
    "name,category,sanctioned,owner_email,remediation_owner_email\n"
    "GitHub,Engineering,yes,owner@acme.test,it@acme.test\n"
    "Salesforce,CRM,true,sales-owner@acme.test,\n"
    "Dropbox,Storage,no,,\n"
)


@pytest.fixture
def inventory(run_import):
    """Identities and applications of acme loaded through the importer."""
    run_import("identities", IDENTITIES_CSV)
    run_import("applications", APPLICATIONS_CSV)
