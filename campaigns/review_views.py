"""Review pages: My reviews, a campaign's items (filter, sort, keyset pages, per-item and bulk decisions),
an item's detail with its decision history, and sign-off."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template import engines
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from markupsafe import Markup

from entitlements.models import FINDING_FIELDS, Finding, IdentityKind, IdentityStatus
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
from .stages import decision_path_text

FINDING_LABELS = dict(Finding.choices)
KIND_LABELS = dict(IdentityKind.choices)
# The decision, recommendation, identity, application and role are always shown; these columns are optional
# (key, label, shown by default). The column chooser remembers each member's choice in the browser, in a cookie
# the page reads (keys joined by "."), so only the columns shown are rendered.
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
DEFAULT_COLUMNS = frozenset(key for key, _label, shown in OPTIONAL_COLUMNS if shown)
COLUMNS_COOKIE = "thalian-cols-review-items"


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
    return _with_query(reverse("review_items", args=[request.organization.slug, campaign.pk]), **params)


def _with_query(url: str, **params) -> str:
    params = {k: v for k, v in params.items() if v}
    return f"{url}?{urlencode(params)}" if params else url


def _safe_next(request, fallback: str) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return nxt
    return fallback


# The fields a row of the items table shows (and the sort columns its cursors name): the page reads only these,
# as plain rows (review_selectors.ItemRow); a field the row template uses must be named here.
ROW_FIELDS = (
    "id", "identity_email", "identity_name", "identity_department", "identity_manager_email", "identity_kind",
    "identity_status", "application_name", "application_sanctioned", "role", "last_used", "recommendation",
    "recommendation_reason", "reviewer_id", "reviewer_email", "decision", "decision_reason", "decided_by_email",
    "signed_off_at", "exception_expires_on", "ticket_key", "ticket_url", "ticket_status", "stage", "stage_decisions",
    "decided_on_behalf_of_email",
    *FINDING_FIELDS.values(),
)
ROWS_TEMPLATE = "campaigns/review_rows.html"
# Labels the rows look up (choice labels once, instead of get_FOO_display() per row).
ROW_LABELS = {
    "decision_labels": dict(ReviewItem._meta.get_field("decision").flatchoices),
    "recommendation_labels": dict(ReviewItem._meta.get_field("recommendation").flatchoices),
    "ticket_labels": dict(ReviewItem._meta.get_field("ticket_status").flatchoices),
    "finding_labels": FINDING_LABELS,
    "finding_classes": {value: value.replace("_", "-") for value in FINDING_LABELS},
    "kind_labels": KIND_LABELS,
}


def shown_columns(request) -> frozenset[str]:
    """The optional columns the member shows: their choice in the column chooser (a cookie, so hidden columns are
    not rendered at all), else the defaults."""
    saved = request.COOKIES.get(COLUMNS_COOKIE)
    if saved is None:
        return DEFAULT_COLUMNS
    return frozenset(saved.split(".")) & {key for key, _label, _shown in OPTIONAL_COLUMNS}


def render_rows(items, *, can_decide: bool, columns: frozenset[str], error: str = "", message: str = "") -> Markup:
    """The rows of the items table, rendered by Jinja2 in one pass over the page (every value autoescaped)."""
    context = {**ROW_LABELS, "items": items, "can_decide": can_decide, "columns": columns, "error": error,
               "message": message}
    return Markup(engines["jinja2"].get_template(ROWS_TEMPLATE).render(context))


STAGE_DECISION_LABELS = {"approve": "approved", "revoke": "revoked", "exception": "exception"}


def _earlier_stage_texts(item: ReviewItem) -> list[str]:
    texts = []
    for entry in item.stage_decisions or []:
        if entry.get("decision"):
            texts.append(f"Stage {entry['stage']}: {STAGE_DECISION_LABELS.get(entry['decision'], entry['decision'])} "
                         f"by {entry.get('decided_by')}" + (f": {entry['reason']}" if entry.get("reason") else ""))
        else:
            texts.append(f"Stage {entry['stage']}: no decision, carried forward")
    return texts


def _decorate(request, campaign, items) -> None:
    """Display values of each item: its label, its stage, whether it is the member's own access, whether they may
    decide it."""
    membership = request.membership
    # The page-wide conditions once; then per item: not signed off, not their own access, theirs unless they
    # may decide any item.
    open_campaign = campaign.status == CampaignStatus.ACTIVE
    decides = has_perm(membership.role, Perm.DECIDE_ASSIGNED)
    open_to_member = open_campaign and decides
    decides_any = membership_can_decide_any(membership)
    # Reassign: a reviewer's own open items; any open item for those who manage campaigns.
    manages = has_perm(membership.role, Perm.MANAGE_CAMPAIGNS)
    multi_stage = campaign.is_multi_stage
    hidden = sel.stages_hiding_earlier_decisions(campaign=campaign, membership=membership) if multi_stage else ()
    for item in items:
        item.label = f"{item.identity_email} in {item.application_name}"
        if multi_stage:
            item.stage_label = f"Stage {item.stage} of {campaign.stage_count}"
            item.earlier_stages = [] if item.stage in hidden else _earlier_stage_texts(item)
        else:
            item.stage_label, item.earlier_stages = "", []
        item.own_access = is_own_access(item, membership)
        item.can_decide = (
            open_to_member and item.signed_off_at is None and not item.own_access
            and (decides_any or item.reviewer_id == membership.pk)
        )
        item.can_reassign = open_campaign and item.signed_off_at is None and (
            manages or (decides and item.reviewer_id == membership.pk)
        )


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
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id, with_fallback_reviewer=False)
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
            matching,
            sort=sort_param,
            cursor=request.GET.get("cursor", ""),
            page_size=page_size,
            fields=ROW_FIELDS,
        )
    except ValidationError as exc:
        errors.append(_error_text(exc))
        status = 400
        flt, sort_param, page = sel.ItemFilter(), "id", sel.ItemPage(items=[], sort="id")
    review_context = _review_context(request, campaign)
    columns = shown_columns(request)
    _decorate(request, campaign, page.items)
    rows = render_rows(page.items, can_decide=review_context["can_decide"], columns=columns)
    size_param = page.page_size if page.page_size != sel.DEFAULT_PAGE_SIZE else ""
    items_url = reverse("review_items", args=[request.organization.slug, campaign.pk])  # once for every link
    base_params = {**flt.active, "sort": sort_param if sort_param != "id" else "", "page_size": size_param}
    context = {
        **review_context,
        "flt": flt,
        "filter_params": flt.active,
        "more_filters_active": len(set(flt.active) - {"search", "application", "department", "decision", "stage"})
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
        "stage_options": [str(n) for n in range(1, campaign.stage_count + 1)] if campaign.is_multi_stage else [],
        "reassign_candidates": reviewer_candidates(organization=request.organization, exclude=request.membership)
        if review_context["can_decide"] else [],
        "this_url": request.get_full_path(),
        "bar_url": reverse("review_progress", args=[request.organization.slug, campaign.pk])
        + "?"
        + urlencode({**flt.active, "next": request.get_full_path()}),
        "optional_columns": [(key, label, key in columns) for key, label, _default in OPTIONAL_COLUMNS],
        "shown_columns": [(key, label) for key, label, _default in OPTIONAL_COLUMNS if key in columns],
        "items_url": items_url,
        "next_url": _with_query(items_url, **base_params, cursor=page.next_cursor) if page.next_cursor else "",
        "prev_url": _with_query(items_url, **base_params, cursor=page.prev_cursor) if page.prev_cursor else "",
        "first_url": _with_query(items_url, **base_params),
        "sort_urls": {
            key: _with_query(
                items_url, **flt.active, page_size=size_param, sort=("-" + key if sort_param == key else key)
            )
            for key in sel.SORTS
        },
    }
    template = "campaigns/review_items.html"
    if request.htmx:
        # The column chooser re-renders the table alone; the filters re-render it with the review bar.
        template += "#grid" if request.htmx.target == "items-grid" else "#table"
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
    item.kind_label = KIND_LABELS.get(item.identity_kind, item.identity_kind)
    item.finding_badges = [(f, FINDING_LABELS.get(f, f)) for f in item.findings]
    history = list(sel.review_item_history(item=item))
    stage_rows = decision_path = None
    if campaign.is_multi_stage:
        hidden = sel.stages_hiding_earlier_decisions(campaign=campaign, membership=request.membership)
        stage_rows = sel.item_stage_decisions(item, hidden_stages=hidden)
        if item.stage in hidden:
            history = [e for e in history if e.stage == item.stage]
        else:
            decision_path = decision_path_text(item)
    form = DecisionForm(initial={"decision": item.decision, "reason": item.decision_reason})
    return render(
        request,
        "campaigns/review_item.html",
        {
            **_review_context(request, campaign),
            "item": item,
            "history": history,
            "stage_rows": stage_rows,
            "decision_path": decision_path,
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
                columns=shown_columns(request),
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
    if result.skipped.get("earlier_stage"):
        n = result.skipped["earlier_stage"]
        parts.append(f"{n} item{'s' if n != 1 else ''} you decided in an earlier stage (nobody decides an item in "
                     "two stages)")
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
