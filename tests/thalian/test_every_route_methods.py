"""No route answers a server error to a method it does not expect (OPTIONS, HEAD, PUT, ...), signed in or not."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from tests.thalian.test_tenancy_sweep import NOT_ORGANIZATION_SCOPED, _path, _routes
from tests.world import build_world
from thalian.models import Organization

METHODS = ("options", "head", "put", "patch", "delete")


@pytest.mark.django_db
def test_unexpected_methods_never_answer_a_server_error(settings):
    key = Ed25519PrivateKey.generate().private_bytes_raw()
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(key).decode()  # unset, the public key is a documented 503
    world = build_world(Organization.objects.create(slug="acme", name="Acme", plan="pro"))
    anonymous = Client(raise_request_exception=False)
    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(world.viewer.user)
    token = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {world.viewer_token}")
    errors = []
    for route in _routes():
        if route in NOT_ORGANIZATION_SCOPED and "<" in route:
            continue  # opened by a secret token: nothing to build
        kwargs = world.kwargs_for(route)
        if kwargs is None:
            errors.append(("no ids in tests/world.py for", route, 0))
            continue
        path = _path(route, kwargs)
        for client in (anonymous, token if route.startswith("api/") else signed_in):
            for method in METHODS:
                status = getattr(client, method)(path).status_code
                if status >= 500:
                    errors.append((method.upper(), path, status))
    assert errors == []
