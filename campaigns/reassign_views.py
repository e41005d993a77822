"""Reassign (delegate) from the review screen: one row, the checked rows, or everything in view, to another member
with a reason, through ``review_items_reassign`` (and so ``review_items_move``). The dialog posts with htmx: a
refusal is shown in the dialog, a success reloads the page with the result."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from thalian.access import org_view
from thalian.permissions import Perm

from . import review_selectors as sel
from .models import ReviewItem
from .reassignment import ReassignError, review_items_reassign
from .review_views import _error_text, _items_url, _safe_next
from .selectors import campaign_access

MODES = ("item", "selected", "all")


class ReassignForm(forms.Form):
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES])
    item_id = forms.IntegerField(required=False, min_value=1)
    item_ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    to = forms.EmailField(max_length=254, error_messages={
        "required": "Give the e-mail of the member who should review the items.",
        "invalid": "Enter the e-mail address of the member who should review the items."})
    reason = forms.CharField(max_length=1000, required=False)

    def __init__(self, data):
        super().__init__(data)
        self.fields["item_ids"].choices = [(v, v) for v in data.getlist("item_ids")]


def _answer(request, back: str, *, error: str = "", success: str = ""):
    if request.htmx:
        if error:
            return HttpResponse(format_html('<p class="error" role="alert">{}</p>', error))
        messages.success(request, success)
        response = HttpResponse(status=204)
        response["HX-Redirect"] = back
        return response
    if error:
        messages.error(request, f"Nothing was reassigned. {error}")
    else:
        messages.success(request, success)
    return HttpResponseRedirect(back)


@require_POST
@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
def review_reassign(request, campaign_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    back = _safe_next(request, _items_url(request, campaign))
    form = ReassignForm(request.POST)
    if not form.is_valid():
        return _answer(request, back, error=" ".join(m for errs in form.errors.values() for m in errs))
    data = form.cleaned_data
    membership = request.membership
    try:
        if data["mode"] == "item":
            item = sel.review_item_get(membership=membership, campaign=campaign, item_id=data["item_id"])
            items = ReviewItem.objects.filter(pk=item.pk)
        elif data["mode"] == "selected":
            if not data["item_ids"]:
                return _answer(request, back, error="Check at least one item to reassign.")
            items = sel.review_items_selected(campaign=campaign, membership=membership, item_ids=data["item_ids"])
        else:
            flt = sel.item_filter_parse({k: request.POST.get(f"filter_{k}", "") for k in sel.ItemFilter.KEYS})
            items = sel.review_items_matching(campaign=campaign, membership=membership, flt=flt)
        result = review_items_reassign(campaign=campaign, actor=membership, items=items, to=data["to"],
                                       reason=data["reason"], single=data["mode"] == "item", request=request)
    except ReassignError as exc:
        return _answer(request, back, error=exc.message.removeprefix(f"{exc.field}: "))
    except ValidationError as exc:
        return _answer(request, back, error=_error_text(exc))
    except PermissionDenied as exc:
        if request.htmx:
            return _answer(request, back, error=str(exc))
        raise
    to = data["to"].lower()
    skipped = (f" {result.skipped_self_review} stayed: they are {to}'s own access."
               if result.skipped_self_review else "")
    n = result.moved
    return _answer(request, back, success=f"{n} item{'s' if n != 1 else ''} reassigned to {to}.{skipped}")
