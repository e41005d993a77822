"""Organization access for pages: resolve /o/<slug>/, check membership and role, activate the scope.

A request for an organization the user is not a member of answers 404, exactly like one that does not exist.
A member whose role lacks the permission gets 403.
"""

from __future__ import annotations

import copy
import functools

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from . import tenancy
from .models import PLAN_REQUIRED_MESSAGE, Membership
from .permissions import Perm, has_perm


def user_memberships(request) -> list[Membership]:
    """The signed-in user's memberships with their organizations, by organization name. Loaded once per request:
    the page's own membership and the organization switcher in the page header both come from this list."""
    memberships = getattr(request, "_thalian_memberships", None)
    if memberships is None:
        user = getattr(request, "user", None)
        memberships = []
        if user is not None and user.is_authenticated:
            memberships = list(user.memberships.select_related("organization").order_by("organization__name"))
        request._thalian_memberships = memberships
    return memberships


def membership_for(user, slug: str) -> Membership:
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("organization", "user")
        .filter(user=user, organization__slug=slug, user__is_active=True)
        .first()
    )
    if membership is None:
        raise Http404("No such organization")
    return membership


def require(membership: Membership, perm: Perm) -> None:
    if not has_perm(membership.role, perm):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")


def org_view(perm: Perm | None = None, *, requires_plan: bool = False):
    """Decorator for views under /o/<org_slug>/. Sets request.organization and request.membership and runs
    the view inside the organization's scope."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, org_slug: str, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.is_active:
                raise Http404("No such organization")
            membership = next((m for m in user_memberships(request) if m.organization.slug == org_slug), None)
            if membership is None:
                raise Http404("No such organization")
            # The view gets its own instances: a form bound to request.organization must not rename the
            # organization in the page header's switcher before anything is saved.
            membership = copy.copy(membership)
            membership.organization = copy.copy(membership.organization)
            request.membership = membership
            request.organization = membership.organization
            if request.session.get("last_org") != org_slug:  # saving the session on every page is a write
                request.session["last_org"] = org_slug
            if perm is not None:
                require(membership, perm)
            if requires_plan and not membership.organization.has_access_reviews:
                return render(
                    request, "thalian/plan_required.html", {"message": PLAN_REQUIRED_MESSAGE}, status=403
                )
            with tenancy.scope(membership.organization):
                return view(request, *args, **kwargs)

        return wrapper

    return decorator
