"""Fuzz the whole API from its OpenAPI schema with schemathesis, against the live test server (PostgreSQL in
`make test`), as an admin and as a viewer: no answer may be a server error, and every documented answer must
match its schema.

Path ids are mostly real ones (tests/world.py) so the fuzz reaches real objects, sometimes generated ones. Reads
run against one organization; writes (POST, PUT, PATCH, DELETE) against a throwaway organization with the same
objects, so a fuzzed DELETE cannot remove what the reads need. Examples per operation and token:
API_FUZZ_EXAMPLES (default 10); generation is derandomized so a run is repeatable.
"""

from __future__ import annotations

import base64
import os

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.world import build_world
from thalian.models import Organization

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))
ONLY = os.environ.get("API_FUZZ_ONLY", "")  # e.g. "identities": only operations whose label contains it
WRITE_ORDER = {"POST": 0, "PUT": 1, "PATCH": 2, "DELETE": 3}


def _real_path_parameters(world, path: str) -> dict:
    values = {}
    for name in (part[1:-1] for part in path.split("/") if part.startswith("{")):
        if name == "org_slug":
            values[name] = world.organization.slug
            continue
        value = world.value_for(path[: path.index("{" + name + "}")], name)
        if value is not None:
            values[name] = str(value)
    return values


def _strategy(operation, world):
    real = _real_path_parameters(world, operation.path)
    owned = {"org_slug": real["org_slug"]} if "org_slug" in real else {}
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=real),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=owned),  # ids that may not exist
    )


def _fuzz(operation, world, token: str, base_url: str) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )
    @given(case=_strategy(operation, world))
    def run(case):
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()


@pytest.mark.django_db(transaction=True)
def test_fuzzed_api_requests_never_fail_on_the_server_and_match_the_schema(live_server, settings):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    reads = build_world(Organization.objects.create(slug="fuzz", name="Fuzz", plan="pro"))
    writes = build_world(Organization.objects.create(slug="scratch", name="Scratch", plan="pro"))
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60
    operations = [op for op in operations if ONLY in op.label]
    operations.sort(key=lambda op: (op.method.upper() != "GET", WRITE_ORDER.get(op.method.upper(), -1), op.path))
    failures = []
    for operation in operations:
        world = reads if operation.method.upper() in ("GET", "HEAD") else writes
        for token in (world.admin_token, world.viewer_token):
            try:
                _fuzz(operation, world, token, live_server.url)
            except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every failing operation
                who = "admin" if token == world.admin_token else "viewer"
                failures.append(f"{operation.label} as {who}: {str(exc)[:3000]}")
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)
