"""Review pages: My reviews, a campaign's items (filter, sort, keyset pages, per-item and bulk decisions),
an item's detail with its decision history, and sign-off."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template import engines
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from markupsafe import Markup

from entitlements.models import Finding, IdentityKind, IdentityStatus
from thalian.access import org_view
from thalian.permissions import Perm, has_perm

from . import review_selectors as sel
from .decisions import (
    bulk_decision_breakdown,
    decisions_bulk_apply,
    is_own_access,
    membership_can_decide_any,
    review_item_decide,
    review_sign_off,
    reviewer_progress,
)
from .models import CampaignStatus, Decision, ReviewItem
from .review_forms import BulkDecisionForm, DecisionForm
from .selectors import campaign_access, reviewer_candidates

FINDING_LABELS = dict(Finding.choices)
KIND_LABELS = dict(IdentityKind.choices)
# The decision, recommendation, identity, application and role are always shown; these columns are optional
# (key, label, shown by default). The column chooser remembers each member's choice in the browser.
OPTIONAL_COLUMNS = [
    ("findings", "Findings", True),
    ("last_used", "Last used", True),
    ("department", "Department", False),
    ("manager", "Manager", False),
    ("kind", "Kind", False),
    ("reviewer", "Reviewer", False),
    ("decided_by", "Decided by", False),
    ("ticket", "Ticket", False),
]


def _error_text(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(" ".join(v) for v in exc.message_dict.values())
    return " ".join(exc.messages)


def _form_error_text(form) -> str:
    parts = []
    for name, errs in form.errors.items():
        label = "" if name == "__all__" else f"{form.fields[name].label or name.replace('_', ' ').capitalize()}: "
        parts.append(label + " ".join(errs))
    return " ".join(parts)


def _items_url(request, campaign, **params) -> str:
    url = reverse("review_items", args=[request.organization.slug, campaign.pk])
    params = {k: v for k, v in params.items() if v}
    return f"{url}?{urlencode(params)}" if params else url


def _safe_next(request, fallback: str) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return nxt
    return fallback


def _can_decide_item(request, campaign, item: ReviewItem) -> bool:
    membership = request.membership
    if campaign.status != CampaignStatus.ACTIVE or item.signed_off_at is not None:
        return False
    if not has_perm(membership.role, Perm.DECIDE_ASSIGNED) or is_own_access(item, membership):
        return False
    return membership_can_decide_any(membership) or item.reviewer_id == membership.pk


def _can_reassign_item(request, campaign, item: ReviewItem) -> bool:
    """The row's Reassign action: a reviewer's own open items, any open item for those who manage campaigns."""
    membership = request.membership
    if campaign.status != CampaignStatus.ACTIVE or item.signed_off_at is not None:
        return False
    if has_perm(membership.role, Perm.MANAGE_CAMPAIGNS):
        return True
    return has_perm(membership.role, Perm.DECIDE_ASSIGNED) and item.reviewer_id == membership.pk


# Columns the items table never shows: not loaded for its pages.
ROW_UNUSED_FIELDS = (
    "entitlement", "application", "application_category", "assignment_note", "decision_comment", "decided_by",
    "decided_by_role", "decided_at", "version", "ticket_error", "remediation_status", "remediation_checked_at",
)
# Display labels of the item's choice fields, looked up once instead of through get_FOO_display() per row.
RECOMMENDATION_LABELS = dict(ReviewItem._meta.get_field("recommendation").flatchoices)
DECISION_LABELS = dict(ReviewItem._meta.get_field("decision").flatchoices)
TICKET_STATUS_LABELS = dict(ReviewItem._meta.get_field("ticket_status").flatchoices)
ROWS_TEMPLATE = "campaigns/review_rows.html"


def _static_fragments() -> dict:
    """Markup that is the same on every row, built once: the decision buttons for each current decision, the
    badges of recommendations and findings, and the class of the columns hidden by default."""
    buttons = []
    for value, text in DECISION_LABELS.items():
        ask = "" if value == Decision.APPROVE else f' data-ask-reason="{value}"'
        buttons.append((value, f'<button type="submit" name="decision" value="{value}" class="decide decide-{value}" '
                               f'aria-pressed="{{pressed_{value}}}"{ask}>{text}</button>'))
    pressed = {}
    for current in ["", *DECISION_LABELS]:
        html_ = "".join(b.replace("{pressed_" + v + "}", "true" if v == current else "false") for v, b in buttons)
        pressed[current] = Markup(html_)
    return {
        "pressed": pressed,
        "recommendation_badges": {
            v: Markup('<span class="badge badge-{}">{}</span>').format(v, t) for v, t in RECOMMENDATION_LABELS.items()
        },
        "finding_badges": {
            v: Markup('<span class="badge badge-{}">{}</span>').format(v.replace("_", "-"), t)
            for v, t in FINDING_LABELS.items()
        },
        "hidden": {key: Markup("" if shown else ' class="col-hidden"') for key, _label, shown in OPTIONAL_COLUMNS},
        "decision_labels": DECISION_LABELS,
        "ticket_labels": TICKET_STATUS_LABELS,
    }


ROW_FRAGMENTS = _static_fragments()


def render_rows(items, *, can_decide: bool, csrf_token: str = "", next_url: str = "", error: str = "",
                message: str = "") -> Markup:
    """The rows of the items table, rendered by Jinja2 in one pass over the page (every value autoescaped)."""
    hidden_inputs = (
        Markup('<input type="hidden" name="csrfmiddlewaretoken" value="{}"><input type="hidden" name="next" value="{}">')
        .format(csrf_token, next_url)
        if can_decide
        else ""
    )
    return Markup(
        engines["jinja2"].get_template(ROWS_TEMPLATE).render(
            {
                **ROW_FRAGMENTS,
                "items": items,
                "can_decide": can_decide,
                "hidden_inputs": hidden_inputs,
                "error": error,
                "message": message,
            }
        )
    )


def _decorate(request, campaign, items) -> None:
    """Display values of each item."""
    _decorate_urls(request, campaign, items)
    for item in items:
        item.finding_badges = [(f, FINDING_LABELS.get(f, f)) for f in item.findings]
        item.kind_label = KIND_LABELS.get(item.identity_kind, item.identity_kind)
        item.own_access = is_own_access(item, request.membership)
        item.can_decide = _can_decide_item(request, campaign, item)
        item.can_reassign = _can_reassign_item(request, campaign, item)


def _campaign_url(request, campaign) -> str:
    try:
        return reverse("campaign_detail", args=[request.organization.slug, campaign.pk])
    except NoReverseMatch:
        return ""


def _review_context(request, campaign) -> dict:
    membership = request.membership
    can_decide = campaign.status == CampaignStatus.ACTIVE and has_perm(membership.role, Perm.DECIDE_ASSIGNED)
    return {
        "campaign": campaign,
        "campaign_url": _campaign_url(request, campaign),
        "can_decide": can_decide,
    }


def _decorate_urls(request, campaign, items) -> None:
    # One reverse() for the page instead of two per row.
    base = reverse("review_items", args=[request.organization.slug, campaign.pk])
    for item in items:
        item.label = f"{item.identity_email} in {item.application_name}"
        item.detail_url = f"{base}{item.pk}/"
        item.decide_url = f"{base}{item.pk}/decide/"


def _options_html(values: list[str], selected: str) -> str:
    # A campaign can span hundreds of applications: built here in one pass rather than a template loop.
    parts = []
    for value in values:
        text = html.escape(value)
        parts.append(f'<option value="{text}"{" selected" if value == selected else ""}>{text}</option>')
    return mark_safe("\n".join(parts))  # every value is escaped above


def _option_lists(options: dict[str, list[str]], flt) -> dict:
    return {
        "application_options": _options_html(options["applications"], flt.application),
        "department_options": _options_html(options["departments"], flt.department),
    }


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def my_reviews(request):
    reviews = sel.my_reviews(membership=request.membership)
    return render(request, "campaigns/review_my.html", {"reviews": reviews})


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def item_list(request, campaign_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    errors: list[str] = []
    status = 200
    try:
        flt = sel.item_filter_parse(request.GET)
        sort, descending = sel.sort_parse(request.GET.get("sort"))
        sort_param = ("-" if descending else "") + sort
        try:
            page_size = int(request.GET.get("page_size") or sel.DEFAULT_PAGE_SIZE)
        except ValueError:
            raise ValidationError({"page_size": "page_size must be a whole number."}) from None
        matching = sel.review_items_matching(campaign=campaign, membership=request.membership, flt=flt)
        page = sel.review_items_page(
            matching.defer(*ROW_UNUSED_FIELDS),
            sort=sort_param,
            cursor=request.GET.get("cursor", ""),
            page_size=page_size,
        )
    except ValidationError as exc:
        errors.append(_error_text(exc))
        status = 400
        flt, sort_param, page = sel.ItemFilter(), "id", sel.ItemPage(items=[], sort="id")
    review_context = _review_context(request, campaign)
    # One masked CSRF token for the rows and the rest of the page instead of one each.
    csrf_token = get_token(request) if review_context["can_decide"] else ""
    _decorate(request, campaign, page.items)
    rows = render_rows(
        page.items, can_decide=review_context["can_decide"], csrf_token=csrf_token, next_url=request.get_full_path()
    )
    size_param = page.page_size if page.page_size != sel.DEFAULT_PAGE_SIZE else ""
    base_params = {**flt.active, "sort": sort_param if sort_param != "id" else "", "page_size": size_param}
    context = {
        **review_context,
        **({"csrf_token": csrf_token} if csrf_token else {}),
        "flt": flt,
        "filter_params": flt.active,
        "more_filters_active": len(set(flt.active) - {"search", "application", "department", "decision"})
        + (sort_param != "id"),
        "page": page,
        "rows": rows,
        "errors": errors,
        "sort": sort_param,
        "sort_choices": [(k, v) for k, v in sel.SORT_LABELS.items()],
        **_option_lists(sel.review_filter_options(campaign=campaign, membership=request.membership), flt),
        "decision_states": list(sel.DECISION_STATE_LABELS.items()),
        "kinds": IdentityKind.choices,
        "statuses": IdentityStatus.choices,
        "findings": Finding.choices,
        "recommendations": Decision.choices,
        "decisions": Decision.choices,
        "sees_all": sel.sees_all_items(request.membership),
        "reassign_candidates": reviewer_candidates(organization=request.organization, exclude=request.membership)
        if review_context["can_decide"] else [],
        "this_url": request.get_full_path(),
        "bar_url": reverse("review_progress", args=[request.organization.slug, campaign.pk])
        + "?"
        + urlencode({**flt.active, "next": request.get_full_path()}),
        "optional_columns": OPTIONAL_COLUMNS,
        "next_url": _items_url(request, campaign, **base_params, cursor=page.next_cursor) if page.next_cursor else "",
        "prev_url": _items_url(request, campaign, **base_params, cursor=page.prev_cursor) if page.prev_cursor else "",
        "first_url": _items_url(request, campaign, **base_params),
        "sort_urls": {
            key: _items_url(
                request, campaign, **flt.active, page_size=size_param, sort=("-" + key if sort_param == key else key)
            )
            for key in sel.SORTS
        },
    }
    template = "campaigns/review_items.html#table" if request.htmx else "campaigns/review_items.html"
    return render(request, template, context, status=status)


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def progress(request, campaign_id):
    """The review bar: the member's own progress, the bulk actions with the number of items the current filters
    match, sign-off once everything assigned is decided, and the done state after it. The items page loads it
    separately (htmx), so counting never delays the table; it reloads after every decision."""
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    context = _review_context(request, campaign)
    progress = None
    matching = None
    next_review = None
    try:
        flt = sel.item_filter_parse(request.GET)
    except ValidationError:
        flt = sel.ItemFilter()
    matching_items = sel.review_items_matching(campaign=campaign, membership=request.membership, flt=flt)
    if has_perm(request.membership.role, Perm.DECIDE_ASSIGNED):
        progress = reviewer_progress(campaign=campaign, membership=request.membership)
        if progress.is_signed_off:
            # Signing off the last items may have completed the campaign: the done state shows either way.
            next_review = sel.next_open_review(membership=request.membership, exclude=campaign)
    if not context["can_decide"]:
        matching = matching_items.count()
    elif membership_can_decide_any(request.membership) or not progress.is_signed_off:
        # What "… all in view" would decide: the same count the confirmation page states.
        matching = matching_items.filter(signed_off_at__isnull=True).count()
    percent = round(100 * progress.decided / progress.total) if progress and progress.total else 0
    context.update(
        {
            "progress": progress,
            "progress_class": f"w-{5 * round(percent / 5)}",
            "matching": matching,
            "flt": flt,
            "filter_params": flt.active,
            "next_review": next_review,
            "next_review_url": _items_url(request, next_review.campaign, reviewer="me") if next_review else "",
            "this_url": _safe_next(request, _items_url(request, campaign)),
            "progress_url": request.get_full_path(),
        }
    )
    template = "campaigns/review_progress.html#panel" if request.htmx else "campaigns/review_progress.html"
    return render(request, template, context)


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def item_detail(request, campaign_id, item_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    item = sel.review_item_get(membership=request.membership, campaign=campaign, item_id=item_id)
    _decorate(request, campaign, [item])
    history = list(sel.review_item_history(item=item))
    form = DecisionForm(initial={"decision": item.decision, "reason": item.decision_reason})
    return render(
        request,
        "campaigns/review_item.html",
        {
            **_review_context(request, campaign),
            "item": item,
            "history": history,
            "form": form,
            "decisions": Decision.choices,
            "back_url": _safe_next(request, _items_url(request, campaign)),
        },
    )


@require_POST
@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
def item_decide(request, campaign_id, item_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    item = sel.review_item_get(membership=request.membership, campaign=campaign, item_id=item_id)
    form = DecisionForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            item = review_item_decide(
                item=item,
                actor=request.membership,
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
                comment=form.cleaned_data["comment"],
                expires_on=form.cleaned_data["expires_on"]
                if form.cleaned_data["decision"] == Decision.EXCEPTION
                else None,
                request=request,
            )
        except ValidationError as exc:
            error = _error_text(exc)
    else:
        error = _form_error_text(form)
    if request.htmx:
        _decorate(request, campaign, [item])
        response = HttpResponse(
            render_rows(
                [item],
                can_decide=_review_context(request, campaign)["can_decide"],
                csrf_token=get_token(request),
                next_url=_safe_next(request, _items_url(request, campaign)),
                error=error,
                message="" if error else f"{item.get_decision_display()} recorded.",
            )
        )
        if not error:
            # The progress panel listens for this and reloads its counts.
            response["HX-Trigger"] = "review-decided"
        return response
    if error:
        messages.error(request, f"{item.identity_email} in {item.application_name}: {error}")
    else:
        messages.success(
            request, f"{item.get_decision_display()} recorded for {item.identity_email} in {item.application_name}."
        )
    detail = reverse("review_item_detail", args=[request.organization.slug, campaign.pk, item.pk])
    return HttpResponseRedirect(_safe_next(request, detail))


@require_GET
@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
def bulk_confirm(request, campaign_id):
    """Confirmation of "<decision> all in view": states how many items the current filters match, and which
    are left out (the reviewer's own access; for an approval, items recommended for revoke unless included)."""
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    errors = []
    breakdown = None
    flt = sel.ItemFilter()
    decision = request.GET.get("apply", "")
    include = request.GET.get("include_recommended_revoke") == "1"
    if decision not in Decision.values:
        errors.append(f"Unknown decision {decision!r}; choose approve, revoke or exception.")
    try:
        flt = sel.item_filter_parse({k: v for k, v in request.GET.items() if k != "include_recommended_revoke"})
    except ValidationError as exc:
        errors.append(_error_text(exc))
    if campaign.status != CampaignStatus.ACTIVE:
        errors.append(f"Decisions can only be made while the campaign is active; this campaign is {campaign.status}.")
    if not errors:
        breakdown = bulk_decision_breakdown(
            campaign=campaign,
            actor=request.membership,
            items=sel.review_items_matching(campaign=campaign, membership=request.membership, flt=flt),
            decision=decision,
            include_recommended_revoke=include,
        )
    confirm_url = reverse("review_bulk_confirm", args=[request.organization.slug, campaign.pk])
    query = {**flt.active, "apply": decision}
    return render(
        request,
        "campaigns/review_bulk_confirm.html",
        {
            "campaign": campaign,
            "errors": errors,
            "breakdown": breakdown,
            "count": breakdown.to_decide if breakdown else 0,
            "include": include,
            "include_url": f"{confirm_url}?{urlencode({**query, 'include_recommended_revoke': '1'})}",
            "exclude_url": f"{confirm_url}?{urlencode(query)}",
            "flt": flt,
            "filter_params": flt.active,
            "decision": decision,
            "decision_label": dict(Decision.choices).get(decision, decision),
            "reason_required": campaign.reason_required and decision in (Decision.REVOKE, Decision.EXCEPTION),
            "back_url": _items_url(request, campaign, **flt.active),
        },
        status=400 if errors else 200,
    )


def _skipped_text(result) -> str:
    parts = []
    if result.skipped.get("self_review"):
        n = result.skipped["self_review"]
        parts.append(f"{n} item{'s' if n != 1 else ''} of your own access (another reviewer decides them)")
    if result.skipped.get("recommended_revoke"):
        n = result.skipped["recommended_revoke"]
        causes = ", ".join(f"{c.replace('_', ' ')} {k}" for c, k in result.recommended_revoke_causes.items())
        parts.append(f"{n} item{'s' if n != 1 else ''} recommended for revoke ({causes}); include them explicitly "
                     "to approve them")
    return f" Left out: {'; '.join(parts)}." if parts else ""


@require_POST
@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
def bulk_decide(request, campaign_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    form = BulkDecisionForm(request.POST)
    back = _safe_next(request, _items_url(request, campaign))
    if not form.is_valid():
        messages.error(request, f"Nothing was changed. {_form_error_text(form)}")
        return HttpResponseRedirect(back)
    data = form.cleaned_data
    try:
        if data["mode"] == BulkDecisionForm.MODE_ALL:
            flt = sel.item_filter_parse({k: request.POST.get(f"filter_{k}", "") for k in sel.ItemFilter.KEYS})
            items = sel.review_items_matching(campaign=campaign, membership=request.membership, flt=flt)
            scope_label = f"all in view ({flt.describe()})"
            back = _items_url(request, campaign, **flt.active)
        else:
            items = sel.review_items_selected(
                campaign=campaign, membership=request.membership, item_ids=data["item_ids"]
            )
            scope_label = "selected"
        result = decisions_bulk_apply(
            campaign=campaign,
            actor=request.membership,
            items=items,
            decision=data["decision"],
            reason=data["reason"],
            comment=data["comment"],
            include_recommended_revoke=data["include_recommended_revoke"],
            expires_on=data["expires_on"] if data["decision"] == Decision.EXCEPTION else None,
            scope_label=scope_label,
            expected_count=data["expected"] if data["mode"] == BulkDecisionForm.MODE_ALL else None,
            request=request,
        )
    except ValidationError as exc:
        messages.error(request, f"Nothing was changed. {_error_text(exc)}")
        return HttpResponseRedirect(back)
    label = dict(Decision.choices)[data["decision"]]
    updated = result.updated
    messages.success(request, f"{label}: {updated} item{'s' if updated != 1 else ''} decided.{_skipped_text(result)}")
    return HttpResponseRedirect(back)


@require_POST
@org_view(Perm.DECIDE_ASSIGNED, requires_plan=True)
def sign_off(request, campaign_id):
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    back = _safe_next(request, _items_url(request, campaign))
    try:
        count = review_sign_off(campaign=campaign, actor=request.membership, request=request)
    except ValidationError as exc:
        messages.error(request, f"Not signed off. {_error_text(exc)}")
        return HttpResponseRedirect(back)
    messages.success(request, f"Signed off: your {count} decisions in {campaign.title} are now locked.")
    return HttpResponseRedirect(back)
