"""Every page and API route, enumerated from the URL resolver: a member of another organization gets 404 with real
ids, exactly as for something that does not exist. A new route fails here until it is covered: either its ids
can be built from the test world (tests/world.py) or it is listed below with the reason it needs no sweep."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.world import PARAM, build_world
from thalian.models import Organization

# Routes that carry no organization's data, with the reason. Anything else must be swept.
NOT_ORGANIZATION_SCOPED = {
    "": "home: sends a signed-in person to their own organization",
    "healthz": "health check: database and broker reachability only",
    "favicon.ico": "static redirect",
    "metrics": "operations metrics for the operator's monitoring, behind METRICS_TOKEN: no organization's data",
    "accounts/login/": "sign-in",
    "accounts/logout/": "sign-out",
    "accounts/two-factor/": "the caller's own second factor",
    "accounts/two-factor/verify/": "the second step of the caller's own sign-in",
    "sso/oidc/callback/": "the identity provider's redirect back, checked against the state its sign-in started",
    "sso/oidc/<uuid:public_id>/start/": "starts single sign-on with an organization's identity provider: public",
    "sso/saml/<slug:org_slug>/metadata/": "the service provider metadata identity providers read: public",
    "sso/saml/<slug:org_slug>/acs/": "receives the identity provider's signed assertion: public before sign-in",
    "sso/saml/<slug:org_slug>/<uuid:public_id>/start/": "starts SAML sign-in: public before sign-in",
    "accounts/password/change/": "the caller's own password",
    "accounts/password/change/done/": "confirmation page",
    "accounts/password/reset/": "asks for a reset e-mail; answers the same for any address",
    "accounts/password/reset/done/": "confirmation page",
    "accounts/reset/<uidb64>/<token>/": "opened by the signed token e-mailed to the person, not by organization",
    "accounts/reset/done/": "confirmation page",
    "invitations/<str:token>/": "opened by the invitation's secret token (only its hash is stored)",
    "guest/<str:token>/": "a guest reviewer's portal, opened by their signed secret link (only its hash is stored)",
    "guest/<str:token>/items/<int:item_id>/decide/": "the guest portal: the link's own items only",
    "guest/<str:token>/bulk/": "the guest portal: the link's own items only",
    "guest/<str:token>/sign-off/": "the guest portal: the link's own items only",
    "guest/access-requests/<str:token>/": "a guest approver's page, opened by their signed secret link (only its "
    "hash is stored): that one request only",
    "guest/<str:token>/delegate/": "the guest portal: hands the link's own open items to a delegate",
    "api/v1/schema/": "the OpenAPI document",
    "api/v1/docs/": "the API documentation page",
    "api/v1/evidence/public-key": "the public key that verifies evidence packages is public",
}
API_METHODS = ("get", "post", "put", "patch", "delete")
PAGE_METHODS = ("get", "post")


def _routes(patterns=None, prefix: str = ""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def _path(route: str, kwargs: dict) -> str:
    return "/" + PARAM.sub(lambda m: str(kwargs[m.group("name")]), route)


ORGANIZATION_PREFIXES = ("o/<slug:org_slug>/", "api/v1/orgs/<slug:org_slug>/")


def _scoped_routes() -> list[str]:
    return [route for route in _routes() if route.startswith(ORGANIZATION_PREFIXES)]


def test_every_route_is_organization_scoped_or_listed_with_a_reason():
    unscoped = {route for route in _routes() if not route.startswith(ORGANIZATION_PREFIXES)}
    assert unscoped - set(NOT_ORGANIZATION_SCOPED) == set(), (
        "routes outside /o/<org>/ and /api/v1/orgs/<org>/: list each in NOT_ORGANIZATION_SCOPED with the reason "
        "it shows no organization's data"
    )
    assert set(NOT_ORGANIZATION_SCOPED) - unscoped == set(), "listed routes that no longer exist"
    assert len(_scoped_routes()) > 100


@pytest.mark.django_db
def test_a_member_of_another_organization_gets_404_on_every_route_with_real_ids():
    acme = build_world(Organization.objects.create(slug="acme", name="Acme", plan="pro"))
    globex = build_world(Organization.objects.create(slug="globex", name="Globex", plan="pro"))
    # Super admins: their role allows everything, so only the organization decides the answer.
    outsider = globex.super_admin
    page_client = Client(raise_request_exception=False)
    page_client.force_login(outsider.user)
    api_client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {globex.super_admin_token}")
    insider_pages = Client(raise_request_exception=False)
    insider_pages.force_login(acme.super_admin.user)
    insider_api = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {acme.super_admin_token}")
    leaks, unbuildable, not_real = [], [], []
    for route in _scoped_routes():
        kwargs = acme.kwargs_for(route)
        if kwargs is None:
            unbuildable.append(route)
            continue
        api = route.startswith("api/")
        client, methods = (api_client, API_METHODS) if api else (page_client, PAGE_METHODS)
        paths = [_path(route, kwargs)]
        # The ids are real: the organization's own admin reaches the route (GET, where the route takes it).
        own = (insider_api if api else insider_pages).get(paths[0]).status_code
        if own == 404:
            not_real.append(paths[0])
        if set(kwargs) - {"org_slug", "channel", "protocol"}:  # names, not an organization's objects
            # acme's ids under the outsider's own organization: found nowhere either.
            paths.append(_path(route, {**kwargs, "org_slug": "globex"}))
        for path in paths:
            statuses = {method: getattr(client, method)(path).status_code for method in methods}
            # 405 only where the route does not take the method at all (the same for every organization).
            if 404 not in statuses.values() or set(statuses.values()) - {404, 405}:
                leaks.append((path, statuses))
    assert unbuildable == [], "routes whose ids tests/world.py cannot build: teach World.value_for their parameters"
    assert not_real == [], "routes the organization's own admin cannot reach with the world's ids"
    assert leaks == []
