from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from campaigns import scheduling
from campaigns.models import Campaign
from campaigns.selectors import campaign_access
from thalian.access import org_view
from thalian.models import Membership
from thalian.permissions import Perm

from . import configuration, delivery, reminders, selectors, services
from .channels import CHANNELS, ChannelError
from .forms import CampaignPolicyForm, NotificationSettingsForm, PreferenceForm, RemindForm
from .models import MANDATORY_EMAIL_EVENTS, CampaignNotificationPolicy, Channel


def campaign_for(request, campaign_id, perm: Perm = Perm.MANAGE_CAMPAIGNS) -> Campaign:
    """The campaign aggregate's access helper: 404 outside the organization, 403 without `perm`."""
    return campaign_access(membership=request.membership, campaign_id=campaign_id, perm=perm)


def reviewer_for(request, value: str) -> Membership | None:
    value = (value or "").strip()
    if not value:
        return None
    found = reminders.member_by_reference(organization_id=request.organization.pk, value=value)
    if found is None:
        raise services.NotificationError(f"No member {value!r} in this organization.")
    return found


def _campaign_page(campaign: Campaign) -> str:
    try:
        return reverse("campaign_detail", args=[campaign.organization.slug, campaign.pk])
    except NoReverseMatch:
        return reverse("org_dashboard", args=[campaign.organization.slug])


@org_view(Perm.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def notification_settings(request):
    config = selectors.notification_settings_for(organization_id=request.organization.pk)
    initial = {name: getattr(config, name) for name in configuration.SETTINGS_FIELDS}
    if request.method == "POST":
        form = NotificationSettingsForm(request.POST, organization=request.organization, initial=initial)
        if form.is_valid():
            configuration.notification_settings_update(
                organization=request.organization,
                actor=request.membership,
                data=form.cleaned_data,
                request=request,
            )
            messages.success(request, "Notification settings saved.")
            return redirect("notification_settings", request.organization.slug)
    else:
        form = NotificationSettingsForm(organization=request.organization, initial=initial)
    return render(
        request,
        "notifications/settings.html",
        {
            "form": form,
            "config": config,
            "channels": Channel.choices,
            "failed": selectors.failed_notifications(organization_id=request.organization.pk),
        },
    )


@org_view(Perm.MANAGE_SETTINGS)
@require_POST
def notification_retry(request):
    """Retry one failed notification (`notification`: its id) or, without one, every failed notification."""
    raw = request.POST.get("notification", "").strip()
    ids = None
    if raw:
        try:
            ids = [str(uuid.UUID(raw))]
        except ValueError:
            messages.error(request, f"notification: {raw!r} is not a notification id.")
            return redirect("notification_settings", request.organization.slug)
    try:
        count = delivery.notifications_retry(
            organization=request.organization, actor=request.membership, notification_ids=ids, request=request
        )
    except services.NotificationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{count} notification{'s' if count != 1 else ''} queued to be sent again.")
    return redirect("notification_settings", request.organization.slug)


@org_view(Perm.MANAGE_SETTINGS)
@require_POST
def notification_test(request, channel: str):
    if channel not in CHANNELS:
        raise Http404("No such channel")
    label = Channel(channel).label
    try:
        configuration.notification_test_send(
            organization=request.organization, actor=request.membership, channel=channel, request=request
        )
    except ChannelError as exc:
        messages.error(request, f"{label} test message failed: {exc}")
    else:
        messages.success(request, f"{label} test message sent.")
    return redirect("notification_settings", request.organization.slug)


@org_view()
@require_http_methods(["GET", "POST"])
def notification_preferences(request):
    preference = selectors.preference_of(membership=request.membership)
    if request.method == "POST":
        form = PreferenceForm(request.POST)
        if form.is_valid():
            configuration.notification_preference_update(membership=request.membership, **form.cleaned_data)
            messages.success(request, "Your notification choices are saved.")
            return redirect("notification_preferences", request.organization.slug)
    else:
        form = PreferenceForm(
            initial={"email": preference.email, "slack": preference.slack, "teams": preference.teams}
        )
    config = selectors.notification_settings_for(organization_id=request.organization.pk)
    return render(
        request,
        "notifications/preferences.html",
        {
            "form": form,
            "config": config,
            "mandatory": sorted(event.label for event in MANDATORY_EMAIL_EVENTS),
        },
    )


def _reminder_response(request, campaign: Campaign, result, error: str | None):
    """A Send reminder button's answer: the inline result for htmx, else messages on the campaign page."""
    if request.htmx:
        return render(
            request,
            "notifications/_remind_result.html",
            {"result": result, "error": error},
            status=400 if error else 200,
        )
    if error:
        messages.error(request, error)
    elif result.reminded:
        messages.success(request, f"Reminder sent to {', '.join(result.reminded)}.")
    if result and result.already_reminded:
        messages.warning(request, f"Already reminded today: {', '.join(result.already_reminded)}.")
    return redirect(_campaign_page(campaign))


@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
@require_POST
def campaign_remind(request, campaign_id):
    campaign = campaign_for(request, campaign_id)
    form = RemindForm(request.POST)
    result = error = None
    if form.is_valid():
        try:
            reviewer = reminders.reminder_target(campaign=campaign, value=form.cleaned_data["reviewer"])
            result = reminders.reminder_send(
                campaign=campaign,
                actor=request.membership,
                reviewer=reviewer,
                application=form.cleaned_data["application"].strip() or None,
                request=request,
            )
        except services.NotificationError as exc:
            error = str(exc)
    else:
        error = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
    return _reminder_response(request, campaign, result, error)


@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
@require_POST
def campaign_remind_removal(request, campaign_id):
    """Send reminder for one row of the campaign page's remediation owners table."""
    from . import remediation

    campaign = campaign_for(request, campaign_id)
    result = error = None
    try:
        owner = reviewer_for(request, request.POST.get("remediation_owner", ""))
        if owner is None:
            raise services.NotificationError("Choose the remediation owner to remind.")
        result = remediation.removal_reminder_send(
            campaign=campaign, actor=request.membership, owner=owner, request=request
        )
    except services.NotificationError as exc:
        error = str(exc)
    return _reminder_response(request, campaign, result, error)


@org_view(Perm.MANAGE_CAMPAIGNS, requires_plan=True)
@require_POST
def campaign_delete(request, campaign_id):
    campaign = campaign_for(request, campaign_id)
    try:
        scheduling.campaign_delete(campaign=campaign, actor=request.membership, request=request)
    except scheduling.CampaignNotDeletable as exc:
        messages.error(request, f"Cannot delete: {exc}.")
        return redirect(_campaign_page(campaign))
    messages.success(request, f"Campaign “{campaign.title}” deleted.")
    try:
        return redirect(reverse("campaign_list", args=[request.organization.slug]) + "?tab=scheduled")
    except NoReverseMatch:
        return redirect("org_dashboard", request.organization.slug)


@org_view(Perm.VIEW_ALL_CAMPAIGNS, requires_plan=True)
@require_http_methods(["GET", "POST"])
def campaign_notifications(request, campaign_id):
    """A campaign's reminder settings (editable by campaign managers) and its full notification log."""
    campaign = campaign_for(request, campaign_id, Perm.VIEW_ALL_CAMPAIGNS)
    can_manage = request.membership.can(Perm.MANAGE_CAMPAIGNS)
    policy = CampaignNotificationPolicy.objects.filter(campaign=campaign).first()
    initial = {name: getattr(policy, name, None) for name in configuration.POLICY_FIELDS}
    form = CampaignPolicyForm(initial=initial)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Your role does not allow changing reminder settings.")
        form = CampaignPolicyForm(request.POST, initial=initial)
        if form.is_valid():
            try:
                configuration.campaign_policy_update(
                    campaign=campaign, actor=request.membership, values=form.cleaned_data, request=request
                )
            except services.NotificationError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Reminder settings for this campaign saved.")
                return redirect("campaign_notifications", request.organization.slug, campaign.pk)
    effective = reminders.effective_policy(campaign=campaign)
    page = Paginator(selectors.notifications_for_campaign(campaign=campaign), 100).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "notifications/campaign_notifications.html",
        {
            "campaign": campaign,
            "form": form,
            "can_manage": can_manage,
            "effective": effective,
            "page": page,
            "campaign_url": _campaign_page(campaign),
        },
    )
