"""Review pages: My reviews, a campaign's items (filter, sort, keyset pages, per-item and bulk decisions),
an item's detail with its decision history, and sign-off."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

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
from .selectors import campaign_access

FINDING_LABELS = dict(Finding.choices)
KIND_LABELS = dict(IdentityKind.choices)
COLUMNS = [
    ("identity", "Identity"),
    ("department", "Department"),
    ("manager", "Manager"),
    ("kind", "Kind"),
    ("application", "Application"),
    ("role", "Role"),
    ("last_used", "Last used"),
    ("findings", "Findings"),
    ("recommendation", "Recommendation"),
    ("decision", "Decision"),
    ("reviewer", "Reviewer"),
    ("ticket", "Ticket"),
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


NO_VALUE = '<span class="muted">—</span>'
# Columns the items table never shows: not loaded for its pages.
ROW_UNUSED_FIELDS = (
    "entitlement", "application", "application_category", "assignment_note", "decision_comment", "decided_by",
    "decided_by_role", "decided_at", "version", "ticket_error", "remediation_status", "remediation_checked_at",
)
# Display labels of the item's choice fields, looked up once instead of through get_FOO_display() per row.
RECOMMENDATION_LABELS = dict(ReviewItem._meta.get_field("recommendation").flatchoices)
DECISION_LABELS = dict(ReviewItem._meta.get_field("decision").flatchoices)
TICKET_STATUS_LABELS = dict(ReviewItem._meta.get_field("ticket_status").flatchoices)


def _esc(value) -> str:
    """What django.utils.html.escape returns, without its lazy-string wrapper: called about a thousand times a
    page."""
    return html.escape(str(value))


def _badge(value: str, label: str) -> str:
    return f'<span class="badge badge-{_esc(value.replace("_", "-"))}">{_esc(label)}</span>'


def _row_html(item: ReviewItem, *, can_decide: bool, csrf_input: str, next_url: str, error: str = "",
              message: str = "") -> str:
    """One row of the items table. Built in Python, like the Django admin's change list rows: a page has up
    to 200 of them and this is several times cheaper than a template per row. Every value is escaped."""
    e = _esc
    label = e(item.label)
    cells = []
    if can_decide:
        box = (
            f'<input type="checkbox" name="item_ids" value="{item.pk}" form="bulk-form" aria-label="Check {label}">'
            if item.can_decide
            else ""
        )
        cells.append(f"<td>{box}</td>")
    identity = f'<a href="{e(item.detail_url)}">{e(item.identity_name or item.identity_email)}</a>'
    if item.identity_name:
        identity += f'<br><span class="muted">{e(item.identity_email)}</span>'
    if item.identity_status == "terminated":
        identity += ' <span class="badge badge-terminated">Past user</span>'
    cells.append(f'<td data-col="identity">{identity}</td>')
    cells.append(f'<td data-col="department">{e(item.identity_department or "—")}</td>')
    cells.append(f'<td data-col="manager">{e(item.identity_manager_email or "—")}</td>')
    cells.append(f'<td data-col="kind">{e(item.kind_label)}</td>')
    application = e(item.application_name)
    if not item.application_sanctioned:
        application += ' <span class="badge badge-warning">Unsanctioned</span>'
    cells.append(f'<td data-col="application">{application}</td>')
    cells.append(f'<td data-col="role">{e(item.role)}</td>')
    if item.last_used:
        used = f'<time datetime="{item.last_used.isoformat()}">{item.last_used:%Y-%m-%d}</time>'
    else:
        used = '<span class="muted">Never</span>'
    cells.append(f'<td data-col="last_used">{used}</td>')
    findings = "".join(_badge(v, lbl) for v, lbl in item.finding_badges) or '<span class="muted">None</span>'
    cells.append(f'<td data-col="findings">{findings}</td>')
    recommendation = _badge(item.recommendation, RECOMMENDATION_LABELS.get(item.recommendation, item.recommendation))
    if item.recommendation_reason:
        recommendation += f'<br><span class="muted">{e(item.recommendation_reason)}</span>'
    cells.append(f'<td data-col="recommendation">{recommendation}</td>')
    if item.decision:
        decision = _badge(item.decision, DECISION_LABELS.get(item.decision, item.decision))
        if item.decision_reason:
            decision += f'<br><span class="muted">{e(item.decision_reason)}</span>'
        decision += f'<br><span class="muted">{e(item.decided_by_email)}</span>'
        if item.exception_expires_on:
            decision += f'<br><span class="muted">Expires {item.exception_expires_on:%Y-%m-%d}</span>'
    else:
        decision = '<span class="badge badge-pending">Pending</span>'
    if item.signed_off_at:
        decision += '<br><span class="badge badge-completed">Signed off</span>'
    cells.append(f'<td data-col="decision">{decision}</td>')
    cells.append(f'<td data-col="reviewer">{e(item.reviewer_email or "—")}</td>')
    ticket = ""
    if item.ticket_url:
        ticket = f'<a href="{e(item.ticket_url)}" rel="noopener noreferrer">{e(item.ticket_key or "Ticket")}</a>'
    if item.ticket_status:
        ticket += " " + _badge(item.ticket_status, TICKET_STATUS_LABELS.get(item.ticket_status, item.ticket_status))
    cells.append(f'<td data-col="ticket">{ticket or NO_VALUE}</td>')
    if can_decide:
        if item.can_decide:
            url = e(item.decide_url)
            action = (
                f'<form method="post" action="{url}" hx-post="{url}" hx-target="closest tr" hx-swap="outerHTML" '
                f'aria-label="Decide {label}">{csrf_input}<input type="hidden" name="next" value="{e(next_url)}">'
                f'<label class="visually-hidden" for="reason-{item.pk}">Reason for {label}</label>'
                f'<input id="reason-{item.pk}" type="text" name="reason" size="14" placeholder="Reason">'
                '<span class="actions">'
                '<button type="submit" name="decision" value="approve" class="ok">Approve</button>'
                '<button type="submit" name="decision" value="revoke" class="danger">Revoke</button>'
                '<button type="submit" name="decision" value="exception" class="warn">Exception</button>'
                "</span></form>"
            )
        elif item.own_access:
            action = '<span class="muted">Your own access: another reviewer decides it</span>'
        else:
            action = '<span class="muted">Locked</span>'
        if error:
            action += f'<p class="error" role="alert">{e(error)}</p>'
        elif message:
            action += f'<p class="muted" role="status">{e(message)}</p>'
        cells.append(f"<td>{action}</td>")
    return f'<tr id="item-{item.pk}">{"".join(cells)}</tr>'


def _decorate(request, campaign, items, *, can_decide: bool = False, next_url: str = "", error: str = "",
              message: str = "", csrf_token: str = "") -> None:
    """Display values of each item, and its table row (``row_html``) when the page shows the table."""
    _decorate_urls(request, campaign, items)
    csrf_input = (
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token or get_token(request))}">'
        if can_decide
        else ""
    )
    for item in items:
        item.finding_badges = [(f, FINDING_LABELS.get(f, f)) for f in item.findings]
        item.kind_label = KIND_LABELS.get(item.identity_kind, item.identity_kind)
        item.own_access = is_own_access(item, request.membership)
        item.can_decide = _can_decide_item(request, campaign, item)
        item.row_html = mark_safe(  # built from escaped values only
            _row_html(item, can_decide=can_decide, csrf_input=csrf_input, next_url=next_url, error=error,
                      message=message)
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
        text = _esc(value)
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
    _decorate(
        request,
        campaign,
        page.items,
        can_decide=review_context["can_decide"],
        next_url=request.get_full_path(),
        csrf_token=csrf_token,
    )
    size_param = page.page_size if page.page_size != sel.DEFAULT_PAGE_SIZE else ""
    base_params = {**flt.active, "sort": sort_param if sort_param != "id" else "", "page_size": size_param}
    context = {
        **review_context,
        **({"csrf_token": csrf_token} if csrf_token else {}),
        "flt": flt,
        "filter_params": flt.active,
        "page": page,
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
        "columns": COLUMNS,
        "sees_all": sel.sees_all_items(request.membership),
        "this_url": request.get_full_path(),
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
    """The member's own progress in a campaign and the sign-off button. The items page loads it separately
    (htmx), so counting a reviewer's items never delays the table."""
    campaign = campaign_access(membership=request.membership, campaign_id=campaign_id)
    context = _review_context(request, campaign)
    progress = None
    if context["can_decide"]:
        progress = reviewer_progress(campaign=campaign, membership=request.membership)
    percent = round(100 * progress.decided / progress.total) if progress and progress.total else 0
    context.update(
        {
            "progress": progress,
            "progress_class": f"w-{5 * round(percent / 5)}",
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
        context = _review_context(request, campaign)
        _decorate(
            request,
            campaign,
            [item],
            can_decide=context["can_decide"],
            next_url=_safe_next(request, _items_url(request, campaign)),
            error=error,
            message="" if error else f"{item.get_decision_display()} recorded.",
        )
        context["item"] = item
        response = render(request, "campaigns/review_items.html#row", context)
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
