"""API permission maps fail closed: a method a view implements but does not map is refused."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from thalian.api import ANY_MEMBER, OrgAPIView
from thalian.permissions import Perm

pytestmark = pytest.mark.django_db

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


class _HalfMapped(OrgAPIView):
    required_perms = {"GET": Perm.VIEW_CAMPAIGNS}

    def get(self, request, org_slug):
        return Response({"ok": True})

    def post(self, request, org_slug):  # implemented, but the map does not name POST
        return Response({"changed": True})


def _call(method: str, membership):
    factory = APIRequestFactory()
    request = getattr(factory, method)("/api/v1/orgs/acme/half/", {}, format="json")
    force_authenticate(request, user=membership.user)
    return _HalfMapped.as_view()(request, org_slug=membership.organization.slug)


def test_a_method_missing_from_the_permission_map_is_refused_for_every_role(member):
    for role in ("super_admin", "admin", "viewer"):
        membership = member(role)
        assert _call("get", membership).status_code == 200
        refused = _call("post", membership)
        assert refused.status_code == 403, role
        assert "POST is not allowed" in str(refused.data["detail"])


def test_a_method_the_view_does_not_implement_still_answers_405(member):
    assert _call("put", member("super_admin")).status_code == 405


def _org_api_views(patterns=None):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from _org_api_views(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            view_class = getattr(entry.callback, "view_class", None)
            if view_class is not None and issubclass(view_class, OrgAPIView):
                yield view_class


def test_every_organization_endpoint_names_each_method_it_implements():
    views = set(_org_api_views())
    assert len(views) > 20
    unmapped = {
        f"{view.__module__}.{view.__name__} {method.upper()}"
        for view in views
        for method in HTTP_METHODS
        if hasattr(view, method) and method.upper() not in view.required_perms
    }
    assert unmapped == set()
    # Values are permissions from the role table or the explicit "any member" marker, never a typo.
    for view in views:
        for perm in view.required_perms.values():
            assert perm == ANY_MEMBER or perm in set(Perm), (view, perm)
