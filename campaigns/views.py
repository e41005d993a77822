"""Campaign pages: list with status tabs, the wizard with live preview, the campaign page and its actions."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from thalian.access import org_view
from thalian.models import Membership
from thalian.permissions import Perm, has_perm

from . import decision_quality, guests, launch, remediation, selectors, services, stages
from .forms import CampaignForm, CancelForm, ConfirmRemovedForm, LaunchForm, ReassignForm, ScopePreviewForm
from .models import Campaign, CampaignStatus, ReviewerStrategy
from .panels import campaign_panels

PAGE_SIZE = 25


def _url_exists(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _detail(request, campaign: Campaign):
    return redirect("campaign_detail", request.organization.slug, campaign.pk)


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def campaign_list(request):
    tab = request.GET.get("tab") or "active"
    if tab not in {key for key, _label, _statuses in selectors.STATUS_TABS}:
        raise Http404("No such tab")
    counts = selectors.campaign_tab_counts(membership=request.membership)
    page = Paginator(selectors.campaign_list(membership=request.membership, tab=tab), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    campaigns = list(page.object_list)
    progress = selectors.campaign_progress_many(campaigns=campaigns)
    rows = [(c, progress[c.pk]) for c in campaigns]
    tabs = [(key, label, counts[key]) for key, label, _statuses in selectors.STATUS_TABS]
    return render(request, "campaigns/campaign_list.html", {
        "tab": tab, "tabs": tabs, "rows": rows, "page": page,
        "can_manage": has_perm(request.membership.role, Perm.MANAGE_CAMPAIGNS),
    })


def _wizard(request, *, campaign: Campaign | None):
    organization = request.organization
    if request.method == "POST":
        form = CampaignForm(request.POST, organization=organization)
        if form.is_valid():
            try:
                with transaction.atomic():
                    if campaign is None:
                        campaign = services.campaign_create(
                            organization=organization, actor=request.membership, request=request,
                            **form.service_kwargs(),
                        )
                        if "launch" not in request.POST:  # launching says so itself
                            messages.success(request, _saved_message(campaign))
                    else:
                        campaign = services.campaign_update(
                            campaign=campaign, actor=request.membership, request=request, **form.service_kwargs()
                        )
                        messages.success(request, "Campaign saved.")
            except services.CampaignError as exc:
                form.add_service_error(exc)
            else:
                if "launch" in request.POST:
                    return _launch(request, campaign, override="")
                return _detail(request, campaign)
    else:
        initial = CampaignForm.initial_from(campaign) if campaign is not None else {}
        form = CampaignForm(initial=initial, organization=organization)
    preview = None
    if form.is_bound and form.is_valid():
        preview = _preview_for(form, organization)
    return render(request, "campaigns/campaign_form.html", {"form": form, "campaign": campaign, "preview": preview})


def _preview_for(form, organization):
    try:
        scope = services.scope_clean(organization=organization, scope=form.scope())
    except services.CampaignError as exc:
        return {"error": exc.message}
    preview = {"result": selectors.campaign_scope_preview(organization=organization, scope=scope),
               "summary": form.summary(),
               "remediation_owners": _remediation_preview(form, organization, scope)}
    data = form.cleaned_data
    fallback = selectors.membership_by_email(organization=organization, email=data.get("fallback_reviewer") or "")
    strategy = data.get("reviewer_strategy")
    if fallback is None or not strategy:
        preview["reviewers_hint"] = "Choose the reviewers and a fallback reviewer to see who gets how many items."
        return preview
    try:
        named = services.reviewers_clean(
            organization=organization, strategy=strategy,
            reviewers=(data.get("reviewers") or None) if strategy == ReviewerStrategy.MEMBERS else None,
        )
    except services.CampaignError as exc:
        preview["reviewers_hint"] = exc.message
        return preview
    preview["reviewers"] = selectors.campaign_reviewer_preview(
        organization=organization, scope=scope, strategy=strategy, reviewers=named, fallback=fallback
    )
    return preview


def _remediation_preview(form, organization, scope) -> list | None:
    """Who would remove revoked access per application, as the launch will resolve it."""
    data = form.cleaned_data
    fallback_email = data.get("fallback_remediation_owner") or data.get("fallback_reviewer") or ""
    fallback = selectors.membership_by_email(organization=organization, email=fallback_email) if fallback_email else None
    try:
        overrides = remediation.remediation_owners_clean(
            organization=organization, owners=data.get("remediation_owners") or {}
        )
    except remediation.RemediationError as exc:
        return [{"error": exc.message}]
    return remediation.remediation_owner_preview(
        organization=organization, scope=scope, overrides=overrides, fallback=fallback,
        limit=selectors.PREVIEW_APPLICATIONS,
    )


@require_http_methods(["GET", "POST"])
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_new(request):
    return _wizard(request, campaign=None)


@require_http_methods(["GET", "POST"])
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_edit(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    if campaign.status not in services.EDITABLE_STATUSES:
        messages.error(request, "This campaign has been launched: its scope and reviewers are locked.")
        return _detail(request, campaign)
    return _wizard(request, campaign=campaign)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_preview(request):
    """Live preview of the wizard's scope (htmx): matching applications, identities and item count."""
    form = ScopePreviewForm(request.POST, organization=request.organization)
    form.is_valid()
    if any(name in form.errors for name in ("applications", "categories", "departments", "identity_kinds",
                                            "preset", "min_users")):
        preview = {"error": " ".join(str(e) for errors in form.errors.values() for e in errors)}
    else:
        preview = _preview_for(form, request.organization)
    return render(request, "campaigns/campaign_form.html#preview", {"preview": preview, "oob": True})


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def campaign_detail(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id)
    membership: Membership = request.membership
    role = membership.role
    context = {
        "campaign": campaign,
        "can_manage": has_perm(role, Perm.MANAGE_CAMPAIGNS),
        "can_override": has_perm(role, Perm.OVERRIDE_FRESHNESS),
        "sees_all": has_perm(role, Perm.VIEW_ALL_CAMPAIGNS),
        "can_export": has_perm(role, Perm.EXPORT_EVIDENCE),
    }
    context.update(_launch_context(campaign))
    context["stages"] = stages.campaign_stages(campaign=campaign)
    if campaign.status in services.LAUNCHABLE_STATUSES:
        context["preview"] = selectors.campaign_scope_preview(organization=request.organization,
                                                              scope=campaign.scope)
        context["stale"] = context["preview"].stale
        context["launch_form"] = LaunchForm()
    if campaign.status in services.CANCELLABLE_STATUSES:
        context["cancel_form"] = CancelForm()
    if campaign.snapshot_at is not None:
        progress = selectors.campaign_progress(campaign=campaign)
        context["progress"] = progress
        if context["sees_all"]:
            context["by_application"] = selectors.campaign_progress_by_application(campaign=campaign)
            context["by_reviewer"] = selectors.campaign_progress_by_reviewer(campaign=campaign)
            labels = dict(ReviewerStrategy.choices)
            context["by_stage"] = [
                {**row, "strategy_label": labels.get(row["reviewer_strategy"], row["reviewer_strategy"]),
                 "width_class": selectors.width_class(row["percent"], 100)}
                for row in stages.campaign_progress_by_stage(campaign=campaign)
            ]
            context["recent_decisions"] = selectors.campaign_recent_decisions(campaign=campaign)
            context["unassigned"] = sum(r["total"] for r in context["by_reviewer"] if not r["reviewer_kind"])
            context["guests"] = selectors.campaign_guests(campaign=campaign)
            for guest in context["guests"]:
                guest.status = guests.guest_status(guest)
        if context["sees_all"]:
            progress_r = remediation.campaign_remediation_progress(campaign=campaign)
            for key in ("verified_removed", "confirmed_removed", "action_required", "pending", "proven"):
                progress_r[f"{key}_class"] = selectors.width_class(progress_r[key], progress_r["revoked"])
            context["remediation"] = progress_r
            context["remediation_owners"] = remediation.campaign_remediation_owners(campaign=campaign)
            if campaign.status == CampaignStatus.REMEDIATING and context["can_manage"]:
                context["remind_removal_url"] = _url_exists(
                    "campaign_remind_removal", request.organization.slug, campaign.pk
                )
        context["can_view_quality"] = has_perm(role, Perm.VIEW_DECISION_QUALITY)
        if campaign.status == CampaignStatus.ACTIVE and context["can_manage"]:
            context["reassign_form"] = ReassignForm(
                sources=selectors.campaign_reviewers(campaign=campaign),
                targets=selectors.reviewer_memberships(organization=request.organization),
            )
        context.update(_extensions(request, campaign))
    return render(request, "campaigns/campaign_detail.html", context)


def _extensions(request, campaign: Campaign) -> dict:
    """Panels other areas contribute to the campaign page, shown only when those areas provide them."""
    slug = request.organization.slug
    extra = {
        "items_url": _url_exists("review_items", slug, campaign.pk),
        "remediation_url": _url_exists("campaign_remediation", slug, campaign.pk),
        "remind_url": _url_exists("campaign_remind", slug, campaign.pk),
        "export_csv_url": _url_exists("evidence_campaign_csv", slug, campaign.pk),
        "export_zip_url": _url_exists("evidence_campaign_zip", slug, campaign.pk),
        "report_url": _url_exists("evidence_campaign_report", slug, campaign.pk),
    }
    extra.update(campaign_panels(request=request, campaign=campaign))
    return extra


@require_GET
@org_view(Perm.VIEW_CAMPAIGNS, requires_plan=True)
def campaign_launch_status(request, campaign_id):
    """Polled by the campaign page while the snapshot is taken; reloads the page once it is done."""
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id)
    if campaign.status != CampaignStatus.LAUNCHING and request.htmx:
        return HttpResponseClientRefresh()
    return render(request, "campaigns/campaign_detail.html#launch_status",
                  {"campaign": campaign, **_launch_context(campaign)})


def _launch_context(campaign: Campaign) -> dict:
    percent = launch.campaign_launch_progress(campaign=campaign)
    return {"launch_progress": percent, "launch_width": selectors.width_class(percent, 100)}


def _act(request, campaign: Campaign, action, success: str):
    """Run a lifecycle service; its refusal is shown as an error message on the campaign page."""
    try:
        action()
    except services.CampaignError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return _detail(request, campaign)


def _saved_message(campaign: Campaign) -> str:
    if campaign.launch_at:
        return f"“{campaign.title}” is scheduled to launch on {timezone.localtime(campaign.launch_at):%Y-%m-%d %H:%M}."
    return f"“{campaign.title}” is saved as a draft: launch it when you are ready."


def _launch(request, campaign: Campaign, *, override: str):
    try:
        launch.campaign_launch(
            campaign=campaign, actor=request.membership, request=request, freshness_override_reason=override,
        )
    except services.CampaignError as exc:
        messages.error(request, f"Not launched: {exc.message}")
        if campaign.status == CampaignStatus.DRAFT:
            messages.info(request, _saved_message(campaign))
    else:
        messages.success(request, f"Launching “{campaign.title}”… the snapshot is being taken; this page "
                                  "updates when the review items are ready.")
    return _detail(request, campaign)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_launch(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    form = LaunchForm(request.POST)
    form.is_valid()
    return _launch(request, campaign, override=form.cleaned_data.get("freshness_override_reason", ""))


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_cancel(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    return _act(request, campaign, lambda: services.campaign_cancel(
        campaign=campaign, actor=request.membership, reason=request.POST.get("reason", ""), request=request,
    ), "Campaign cancelled.")


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_close(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    return _act(request, campaign, lambda: services.campaign_close(
        campaign=campaign, actor=request.membership, request=request,
    ), "Campaign closed.")


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_reassign(request, campaign_id):
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    sources = selectors.campaign_reviewers(campaign=campaign)
    targets = list(selectors.reviewer_memberships(organization=request.organization))
    form = ReassignForm(request.POST, sources=sources, targets=targets)
    if not form.is_valid():
        messages.error(request, "Choose who to reassign from and to: " + "; ".join(
            f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return _detail(request, campaign)
    by_id = {str(m.pk): m for m in [*sources, *targets]}
    source_key = form.cleaned_data["from_reviewer"]
    source = None if source_key == "unassigned" else by_id[source_key]
    try:
        result = services.items_reassign(
            campaign=campaign, actor=request.membership, from_reviewer=source,
            to_reviewer=by_id[form.cleaned_data["to_reviewer"]], reason=form.cleaned_data["reason"], request=request,
        )
    except services.CampaignError as exc:
        messages.error(request, exc.message)
    else:
        text = f"{result.reassigned} item(s) reassigned."
        if result.skipped_self_review:
            text += (f" {result.skipped_self_review} item(s) stayed where they were: their identity is the new "
                     "reviewer.")
        messages.success(request, text)
    return _detail(request, campaign)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
def campaign_guest_action(request, campaign_id, guest_id: int, action: str):
    """Revoke a guest reviewer's link, or e-mail them a new one."""
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.MANAGE_CAMPAIGNS)
    guest = selectors.campaign_guest_access(campaign=campaign, guest_id=guest_id)
    act = {"revoke": guests.guest_revoke, "resend": guests.guest_resend}.get(action)
    if act is None:
        raise Http404("No such action.")
    try:
        act(guest=guest, actor=request.membership, request=request)
    except guests.GuestAdminError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"The link of {guest.email} was revoked." if action == "revoke"
                         else f"A new link was e-mailed to {guest.email}; the previous one no longer works.")
    return _detail(request, campaign)


@require_http_methods(["GET", "POST"])
@org_view(Perm.CONFIRM_REMOVAL, requires_plan=True)
def item_confirm_removed(request, campaign_id, item_id):
    """The remediation owner states that revoked access is gone, with a comment saying how."""
    item = remediation.removal_item_access(membership=request.membership, campaign_id=campaign_id, item_id=item_id)
    owner = remediation.remediation_owner_of(item=item)
    form = ConfirmRemovedForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            item = remediation.review_item_confirm_removed(
                item=item, actor=request.membership, comment=form.cleaned_data["comment"], request=request
            )
        except remediation.RemediationError as exc:
            form.add_error("comment" if exc.field == "comment" else None, exc.message)
        else:
            text = f"Removal of {item.identity_email} from {item.application_name} ({item.role}) confirmed."
            if item.campaign.status == CampaignStatus.COMPLETED:
                text += " Every revoke of the campaign is now proven removed: it is completed."
            messages.success(request, text)
            target = _url_exists("remediation_queue", request.organization.slug)
            return redirect(target or reverse("campaign_detail", args=[request.organization.slug, item.campaign_id]))
    return render(request, "campaigns/confirm_removed.html", {
        "item": item, "campaign": item.campaign, "owner": owner, "form": form,
        "proven": item.remediation_status in remediation.REMOVAL_PROVEN,
        "allowed": remediation.can_confirm_removal(
            membership=request.membership, item=item, owner_id=owner.owner_id if owner else None
        ),
    }, status=400 if form.errors else 200)


@require_GET
@org_view(Perm.VIEW_DECISION_QUALITY, requires_plan=True)
def campaign_decision_quality(request, campaign_id):
    """Per reviewer: pace, bulk share, approvals against recommendations, flags; a chart and a table. The
    campaign page loads the section from here (htmx); the page also stands alone."""
    campaign = selectors.campaign_access(membership=request.membership, campaign_id=campaign_id,
                                        perm=Perm.VIEW_DECISION_QUALITY)
    rows = decision_quality.campaign_decision_quality(campaign=campaign)
    context = {
        "campaign": campaign,
        "rows": rows,
        "flagged": sum(1 for r in rows if r.flags),
        "thresholds": decision_quality.thresholds_for(campaign),
        "chart": decision_quality.chart(rows),
    }
    template = "campaigns/decision_quality.html#quality" if request.htmx else "campaigns/decision_quality.html"
    return render(request, template, context)
