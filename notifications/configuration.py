"""Notification settings of an organization, a member's preferences, the test message and a campaign's
notification policy."""

from __future__ import annotations

from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from thalian.audit import audit_record
from thalian.models import Membership, Organization
from thalian.tenancy import assert_same_organization

from . import selectors
from .channels import EMAIL, SLACK, ChannelError, Message
from .delivery import sender_for
from .models import CampaignNotificationPolicy, Event, NotificationPreference, NotificationSettings
from .services import NotificationError, _absolute, build_content

SETTINGS_FIELDS = (
    "slack_channel_id",
    "reminder_every_days",
    "reminder_days_before_due",
    "escalate_after_days",
    "escalation_reassign",
    "fallback_reviewer",
)
SECRET_FIELDS = ("slack_bot_token", "teams_webhook_url")


def _audit_settings(
    action: str,
    organization: Organization,
    actor: Membership,
    request,
    config: NotificationSettings,
    details: dict,
) -> None:
    audit_record(
        action=action,
        organization=organization,
        actor=actor.user,
        request=request,
        target_type="notificationsettings",
        target_id=str(config.pk),
        target_label="Notification settings",
        details=details,
    )


def notification_settings_update(
    *, organization: Organization, actor: Membership, data: dict, request=None
) -> NotificationSettings:
    """`data` holds already validated values. Secrets: a non-empty value replaces the stored one, and
    `clear_<name>` empties it; they are never echoed back or written to the audit log."""
    config = selectors.notification_settings_for(organization_id=organization.pk)
    fallback = data.get("fallback_reviewer")
    if fallback is not None:
        assert_same_organization(config, fallback)
    changed = []
    for name in SETTINGS_FIELDS:
        if name in data and getattr(config, name) != data[name]:
            setattr(config, name, data[name])
            changed.append(name)
    for name in SECRET_FIELDS:
        if data.get(f"clear_{name}"):
            if getattr(config, name):
                setattr(config, name, "")
                changed.append(f"{name} (removed)")
        elif data.get(name):
            setattr(config, name, data[name])
            changed.append(f"{name} (replaced)")
    if changed:
        config.updated_at = timezone.now()
        config.save()
        _audit_settings(
            "notifications.settings_updated", organization, actor, request, config, {"changed": changed}
        )
    return config


def notification_preference_update(
    *, membership: Membership, email: bool, slack: bool, teams: bool
) -> NotificationPreference:
    preference, _ = NotificationPreference.objects.update_or_create(
        organization_id=membership.organization_id,
        membership=membership,
        defaults={"email": email, "slack": slack, "teams": teams},
    )
    return preference


def notification_test_send(
    *, organization: Organization, actor: Membership, channel: str, request=None
) -> str:
    """Send a test message synchronously so the admin sees the outcome at once. Raises ChannelError."""
    config = selectors.notification_settings_for(organization_id=organization.pk)
    content = build_content(
        event=Event.TEST,
        campaign=None,
        details={"organization": organization.name, "url": _absolute("org_dashboard", organization.slug)},
    )
    if channel == SLACK and not config.slack_channel_id:
        recipient = actor.user.email  # no channel configured: send the test as a direct message
    else:
        recipient = actor.user.email if channel == EMAIL else ""
    message = Message(
        event=Event.TEST,
        title=content.title,
        body=content.body,
        action_url=content.action_url,
        action_label=content.action_label,
        recipient_email=recipient,
    )
    outcome = "failed"
    try:
        reference = sender_for(channel=channel, config=config).send(message)
        outcome = "sent"
    except ChannelError as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        _audit_settings(
            "notifications.test_sent",
            organization,
            actor,
            request,
            config,
            {"channel": channel, "outcome": outcome},
        )
    return reference


POLICY_FIELDS = (
    "reminder_every_days",
    "reminder_days_before_due",
    "escalate_after_days",
    "escalation_reassign",
)


def campaign_policy_update(
    *, campaign: Campaign, actor: Membership, values: dict, request=None
) -> CampaignNotificationPolicy:
    """Per-campaign overrides; a None value falls back to the organization's default."""
    assert_same_organization(campaign, actor)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE):
        raise NotificationError(
            f"Reminder settings cannot change on a {campaign.get_status_display().lower()} campaign."
        )
    policy, _ = CampaignNotificationPolicy.objects.get_or_create(
        organization_id=campaign.organization_id, campaign=campaign
    )
    changed = {}
    for name in POLICY_FIELDS:
        if name in values and getattr(policy, name) != values[name]:
            setattr(policy, name, values[name])
            changed[name] = values[name]
    if changed:
        policy.save()
        audit_record(
            action="campaign.notification_policy_updated",
            organization_id=campaign.organization_id,
            actor=actor.user,
            request=request,
            target=campaign,
            details={"changed": changed},
        )
    return policy
