"""API foundations: Bearer token authentication, organization-scoped views, permission classes, errors."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, permissions
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import tenancy
from .models import PLAN_REQUIRED_MESSAGE, ApiToken, Membership
from .permissions import Perm, has_perm


class OrgPermission(permissions.BasePermission):
    """Maps HTTP methods to permissions from the role table: view.required_perms = {"GET": Perm.X, ...}."""

    def has_permission(self, request, view):
        perms = getattr(view, "required_perms", {})
        perm = perms.get(request.method) or perms.get("*")
        if perm is None and request.method in ("HEAD", "OPTIONS"):
            perm = perms.get("GET")
        if perm is None:
            return True
        if not has_perm(request.membership.role, perm):
            raise exceptions.PermissionDenied(f"Your role ({request.membership.role}) does not allow this.")
        return True


class OrgAPIView(APIView):
    """Base for everything under /api/v1/orgs/<org_slug>/. Resolves the membership after authentication
    (404 for non-members, and for a token used against another organization), checks the plan when
    `requires_plan`, and runs the handler inside the organization's scope."""

    permission_classes = [permissions.IsAuthenticated, OrgPermission]
    required_perms: dict[str, Perm] = {}
    requires_plan = False

    def initial(self, request, *args, **kwargs):
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        slug = kwargs.get("org_slug")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            if token.membership.organization.slug != slug:
                raise Http404
            membership = token.membership
        else:
            membership = (
                Membership.objects.select_related("organization", "user")
                .filter(user=request.user, organization__slug=slug)
                .first()
            )
            if membership is None:
                raise Http404
        request.membership = membership
        request.organization = membership.organization
        self._scope = tenancy.scope(membership.organization)
        self._scope.__enter__()
        self.check_permissions(request)
        if self.requires_plan and not membership.organization.has_access_reviews:
            raise exceptions.PermissionDenied(PLAN_REQUIRED_MESSAGE)
        self.check_throttles(request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        scope = getattr(self, "_scope", None)
        if scope is not None:
            self._scope = None
            scope.__exit__(None, None, None)
        return response


def exception_handler(exc, context):
    """Errors are JSON with a `detail` message and, for validation errors, field errors under `errors`."""
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = response.data
        if isinstance(data, dict) and "detail" not in data:
            fields = "; ".join(
                f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items()
            )
            response.data = {"detail": f"Invalid input. {fields}".strip(), "errors": data}
        elif isinstance(data, list):
            response.data = {"detail": " ".join(map(str, data)), "errors": {"non_field_errors": data}}
    elif isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": str(exc), **response.data}
    return response
