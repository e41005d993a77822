"""My settings → Delegation: a member's standing delegations (list, create, end) and who delegated to them."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from thalian.access import org_view
from thalian.permissions import Perm

from .delegation import delegation_create, delegation_delete, delegations_of
from .reassignment import ReassignError
from .review_forms import DelegationForm
from .selectors import reviewer_candidates


def _page(request, form: DelegationForm, errors: list[str], status: int = 200):
    mine, to_me = delegations_of(member=request.membership)
    return render(request, "campaigns/my_delegation.html", {
        "form": form, "errors": errors, "mine": mine, "to_me": to_me,
        "candidates": reviewer_candidates(organization=request.organization, exclude=request.membership),
    }, status=status)


@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
@require_http_methods(["GET", "POST"])
def my_delegation(request):
    if request.method == "GET":
        return _page(request, DelegationForm(initial={"starts_on": timezone.localdate().isoformat()}), [])
    form = DelegationForm(request.POST)
    if not form.is_valid():
        errors = [m for field_errors in form.errors.values() for m in field_errors]
        return _page(request, form, errors, status=400)
    v = form.cleaned_data
    try:
        row = delegation_create(member=request.membership, delegate=v["delegate"], starts_on=v["starts_on"],
                                ends_on=v["ends_on"], move_open_items=v["move_open_items"], request=request)
    except ReassignError as exc:
        return _page(request, form, [exc.message], status=400)
    moved = f" {row.moved_items} open item{'s' if row.moved_items != 1 else ''} moved to them now." \
        if v["move_open_items"] else ""
    until = f"until {row.ends_on:%Y-%m-%d}" if row.ends_on else "until you end it"
    messages.success(request, f"{row.delegate.user.email} reviews in your place from {row.starts_on:%Y-%m-%d} "
                              f"{until}.{moved}")
    return redirect("my_delegation", request.organization.slug)


@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
@require_POST
def my_delegation_end(request, delegation_id: int):
    delegation_delete(member=request.membership, delegation_id=delegation_id, request=request)
    messages.success(request, "The delegation is ended: new assignments come to you again.")
    return redirect("my_delegation", request.organization.slug)
