"""The guest reviewer portal: a guest's own items of one campaign, reached only with their personal link.

Every request carries the link; it is resolved (and audited) on each request, so nothing else is reachable with
it: there is no session, and the rest of the site still asks for a member's sign-in."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from thalian.tenancy import scope

from .decisions import decisions_bulk_apply, review_item_decide, review_sign_off, reviewer_progress
from .delegation import guest_delegate as guest_delegate_items
from .guests import GuestLinkError, guest_resolve
from .models import Decision, ReviewItem
from .reassignment import ReassignError
from .review_selectors import stages_hiding_earlier_decisions


def _errors(exc: ValidationError) -> list[str]:
    if hasattr(exc, "message_dict"):
        return [f"{field}: {m}" if field != "__all__" else m for field, ms in exc.message_dict.items() for m in ms]
    return list(exc.messages)


def _with_guest(view):
    def wrapper(request, token: str, *args, **kwargs):
        try:
            guest = guest_resolve(token=token, request=request)
        except GuestLinkError as exc:
            return render(request, "campaigns/guest_link_error.html", {"message": exc.message}, status=exc.status)
        with scope(organization_id=guest.organization_id):
            return view(request, guest, token, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


def _portal(request, guest, token, *, errors=None, notice="", status=200):
    campaign = guest.campaign
    items = ReviewItem.objects.filter(campaign=campaign, guest=guest).order_by("identity_email", "application_name", "id")
    decision = request.GET.get("decision", "")
    if decision == "undecided":
        items = items.filter(decision="")
    elif decision in Decision.values:
        items = items.filter(decision=decision)
    return render(
        request,
        "campaigns/guest_review.html",
        {
            "guest": guest,
            "campaign": campaign,
            "organization": campaign.organization,
            "items": items.only(
                "id", "identity_email", "identity_name", "identity_department", "application_name", "role",
                "last_used", "recommendation", "recommendation_reason", "decision", "decision_reason",
                "signed_off_at", "stage", "stage_decisions",
            )[:500],
            "hidden_stages": stages_hiding_earlier_decisions(campaign=campaign, membership=guest),
            "progress": reviewer_progress(campaign=campaign, membership=guest),
            "decisions": Decision.choices,
            "token": token,
            "flt_decision": decision,
            "errors": errors or [],
            "notice": notice,
            "delegate_to": request.POST.get("to", "") if request.method == "POST" else "",
        },
        status=status,
    )


@require_http_methods(["GET"])
@_with_guest
def guest_review(request, guest, token):
    done = request.GET.get("done", "")
    notice = {"decided": "Decision saved.", "signed-off": "Signed off: your decisions are recorded. Thank you.",
              "delegated": f"Your open items now go to {guest.delegate_email}, who reviews them on your behalf."}.get(
        done, f"Decision applied to {done[5:]} items." if done.startswith("bulk-") and done[5:].isdigit() else "")
    return _portal(request, guest, token, notice=notice)


def _back(token: str, what: str):
    return redirect(reverse("guest_review", kwargs={"token": token}) + f"?done={what}")


@require_POST
@_with_guest
def guest_decide(request, guest, token, item_id: int):
    item = ReviewItem.objects.filter(campaign=guest.campaign, guest=guest, pk=item_id).first()
    if item is None:  # another reviewer's item, or none: not reachable with this link
        return render(request, "campaigns/guest_link_error.html",
                      {"message": "This item is not one of yours in this review."}, status=404)
    try:
        review_item_decide(item=item, actor=guest, decision=request.POST.get("decision", ""),
                           reason=request.POST.get("reason", ""), comment=request.POST.get("comment", ""),
                           request=request)
    except ValidationError as exc:
        return _portal(request, guest, token, errors=_errors(exc), status=400)
    except PermissionDenied as exc:
        return _portal(request, guest, token, errors=[str(exc)], status=403)
    return _back(token, "decided")


@require_POST
@_with_guest
def guest_bulk_decide(request, guest, token):
    items = ReviewItem.objects.filter(campaign=guest.campaign, guest=guest)
    ids = [v for v in request.POST.getlist("item_ids") if v.isdigit()]
    if not ids:
        return _portal(request, guest, token, errors=["Select at least one item to decide."], status=400)
    try:
        result = decisions_bulk_apply(
            campaign=guest.campaign, actor=guest, items=items.filter(pk__in=ids),
            decision=request.POST.get("decision", ""), reason=request.POST.get("reason", ""),
            include_recommended_revoke=request.POST.get("include_recommended_revoke") == "on", request=request, scope_label=f"{len(ids)} selected items",
        )
    except ValidationError as exc:
        return _portal(request, guest, token, errors=_errors(exc), status=400)
    return _back(token, f"bulk-{result.updated}")


@require_POST
@_with_guest
def guest_sign_off(request, guest, token):
    try:
        review_sign_off(campaign=guest.campaign, actor=guest, request=request)
    except ValidationError as exc:
        return _portal(request, guest, token, errors=_errors(exc), status=400)
    return _back(token, "signed-off")


@require_POST
@_with_guest
def guest_delegate(request, guest, token):
    """The guest names someone (a member, or another person by e-mail) to review their open items instead."""
    try:
        guest_delegate_items(guest=guest, to=request.POST.get("to", ""), reason=request.POST.get("reason", ""),
                             request=request)
    except ReassignError as exc:
        return _portal(request, guest, token, errors=[exc.message], status=400)
    return _back(token, "delegated")
