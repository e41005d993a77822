from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from campaigns.models import Campaign
from campaigns.selectors import campaign_access
from thalian.api import ANY_MEMBER, OrgAPIView
from thalian.models import Membership
from thalian.permissions import Perm

from . import configuration, delivery, reminders, selectors, services
from .forms import validate_slack_channel, validate_slack_token, validate_webhook_url
from .models import MANDATORY_EMAIL_EVENTS, CampaignNotificationPolicy, Notification


def campaign_for(request, campaign_id, perm: Perm = Perm.MANAGE_CAMPAIGNS) -> Campaign:
    return campaign_access(membership=request.membership, campaign_id=campaign_id, perm=perm)


class RemindSerializer(serializers.Serializer):
    reviewer = serializers.CharField(
        required=False,
        allow_blank=False,
        max_length=254,
        help_text="The reviewer's e-mail address or membership id; a guest reviewer of the campaign by e-mail.",
    )
    application = serializers.CharField(
        required=False,
        allow_blank=False,
        max_length=200,
        help_text="Application name (or id): reminds each of its reviewers.",
    )

    def validate(self, attrs):
        if ("reviewer" in attrs) == ("application" in attrs):
            raise ValidationError({"non_field_errors": ["Give either reviewer or application."]})
        return attrs


class ReminderResultSerializer(serializers.Serializer):
    reminded = serializers.ListField(
        child=serializers.CharField(), help_text="Reviewers reminded now (e-mail addresses)."
    )
    already_reminded_today = serializers.ListField(
        child=serializers.CharField(),
        help_text="Reviewers skipped because they already had a manual reminder today.",
    )


def _reminder_result(result: reminders.ReminderResult) -> Response:
    return Response(
        {"reminded": result.reminded, "already_reminded_today": result.already_reminded},
        status=status.HTTP_202_ACCEPTED,
    )


class _ReminderAPI(OrgAPIView):
    """A Send reminder endpoint of a campaign (campaign managers)."""

    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    def campaign_and_data(self, request, campaign_id, serializer_class) -> tuple[Campaign, dict]:
        campaign = campaign_for(request, campaign_id)
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return campaign, serializer.validated_data


class CampaignRemindAPI(_ReminderAPI):
    """POST: send a reminder now to one reviewer, or to every reviewer with pending items of one application."""

    @extend_schema(request=RemindSerializer, responses={202: ReminderResultSerializer})
    def post(self, request, org_slug: str, campaign_id):
        campaign, data = self.campaign_and_data(request, campaign_id, RemindSerializer)
        try:
            reviewer = reminders.reminder_target(campaign=campaign, value=data.get("reviewer", ""))
        except services.NotificationError as exc:
            raise ValidationError({"reviewer": [str(exc)]}) from exc
        try:
            result = reminders.reminder_send(
                campaign=campaign,
                actor=request.membership,
                reviewer=reviewer,
                application=data.get("application"),
                request=request,
            )
        except services.NotificationError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return _reminder_result(result)


class RemindRemovalSerializer(serializers.Serializer):
    remediation_owner = serializers.EmailField(help_text="The remediation owner's e-mail address.")


class CampaignRemindRemovalAPI(_ReminderAPI):
    """POST: remind one remediation owner of a `remediating` campaign of the revoked access they still have to
    remove (at most once per owner, campaign and day)."""

    @extend_schema(request=RemindRemovalSerializer, responses={202: ReminderResultSerializer})
    def post(self, request, org_slug: str, campaign_id):
        from .remediation import removal_reminder_send

        campaign, data = self.campaign_and_data(request, campaign_id, RemindRemovalSerializer)
        email = data["remediation_owner"]
        owner = (
            Membership.objects.select_related("user")
            .filter(organization=request.organization, user__email__iexact=email)
            .first()
        )
        if owner is None:
            raise ValidationError({"remediation_owner": [f"No member {email!r} in this organization."]})
        try:
            result = removal_reminder_send(campaign=campaign, actor=request.membership, owner=owner, request=request)
        except services.NotificationError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return _reminder_result(result)


class NotificationSettingsSerializer(serializers.Serializer):
    slack_bot_token = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=300)
    clear_slack_bot_token = serializers.BooleanField(write_only=True, required=False)
    slack_channel_id = serializers.CharField(required=False, allow_blank=True, max_length=40)
    teams_webhook_url = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=2000
    )
    clear_teams_webhook_url = serializers.BooleanField(write_only=True, required=False)
    slack_configured = serializers.BooleanField(read_only=True)
    teams_configured = serializers.BooleanField(read_only=True)
    reminder_every_days = serializers.IntegerField(required=False, min_value=0, max_value=90)
    reminder_days_before_due = serializers.IntegerField(required=False, min_value=0, max_value=90)
    escalate_after_days = serializers.IntegerField(required=False, min_value=0, max_value=90)
    escalation_reassign = serializers.BooleanField(required=False)
    fallback_reviewer = serializers.EmailField(
        required=False, allow_null=True, source="fallback_reviewer.user.email"
    )

    def _django(self, validator, value):
        from django import forms

        try:
            return validator(value)
        except forms.ValidationError as exc:
            raise ValidationError(exc.messages) from exc

    def validate_slack_bot_token(self, value):
        return self._django(validate_slack_token, value) if value else value

    def validate_slack_channel_id(self, value):
        return self._django(validate_slack_channel, value.strip())

    def validate_teams_webhook_url(self, value):
        return self._django(validate_webhook_url, value) if value else value


class NotificationSettingsAPI(OrgAPIView):
    """Channel configuration and reminder defaults. Secrets are write-only: responses only say whether
    each channel is configured."""

    required_perms = {"GET": Perm.MANAGE_SETTINGS, "PATCH": Perm.MANAGE_SETTINGS}

    @extend_schema(responses=NotificationSettingsSerializer)
    def get(self, request, org_slug: str):
        config = selectors.notification_settings_for(organization_id=request.organization.pk)
        return Response(NotificationSettingsSerializer(config).data)

    @extend_schema(request=NotificationSettingsSerializer, responses=NotificationSettingsSerializer)
    def patch(self, request, org_slug: str):
        serializer = NotificationSettingsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "fallback_reviewer" in data:
            email = (data.pop("fallback_reviewer") or {}).get("user", {}).get("email")
            data["fallback_reviewer"] = None
            if email:
                data["fallback_reviewer"] = selectors.membership_by_email(
                    organization_id=request.organization.pk, email=email
                )
                if data["fallback_reviewer"] is None:
                    raise ValidationError(
                        {"fallback_reviewer": [f"No member {email!r} in this organization."]}
                    )
        config = configuration.notification_settings_update(
            organization=request.organization, actor=request.membership, data=data, request=request
        )
        return Response(NotificationSettingsSerializer(config).data)


class CampaignPolicySerializer(serializers.Serializer):
    reminder_every_days = serializers.IntegerField(min_value=0, max_value=90, allow_null=True, required=False)
    reminder_days_before_due = serializers.IntegerField(
        min_value=0, max_value=90, allow_null=True, required=False
    )
    escalate_after_days = serializers.IntegerField(min_value=0, max_value=90, allow_null=True, required=False)
    escalation_reassign = serializers.BooleanField(allow_null=True, required=False)


class CampaignPolicyOverridesSerializer(serializers.Serializer):
    reminder_every_days = serializers.IntegerField(allow_null=True)
    reminder_days_before_due = serializers.IntegerField(allow_null=True)
    escalate_after_days = serializers.IntegerField(allow_null=True)
    escalation_reassign = serializers.BooleanField(allow_null=True)


class EffectivePolicySerializer(serializers.Serializer):
    reminder_every_days = serializers.IntegerField()
    reminder_days_before_due = serializers.IntegerField()
    escalate_after_days = serializers.IntegerField()
    escalation_reassign = serializers.BooleanField()


class CampaignPolicyStateSerializer(serializers.Serializer):
    overrides = CampaignPolicyOverridesSerializer(
        help_text="This campaign's own values; a null value means the organization's default applies."
    )
    effective = EffectivePolicySerializer(help_text="The values in effect for this campaign.")


def _policy_response(campaign: Campaign) -> dict:
    policy = CampaignNotificationPolicy.objects.filter(campaign=campaign).first()
    effective = reminders.effective_policy(campaign=campaign)
    return {
        "overrides": {name: getattr(policy, name, None) for name in configuration.POLICY_FIELDS},
        "effective": {name: getattr(effective, name) for name in configuration.POLICY_FIELDS},
    }


class CampaignPolicyAPI(OrgAPIView):
    """A campaign's reminder and escalation overrides (null: the organization's default) and what is in effect."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS, "PATCH": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    @extend_schema(responses=CampaignPolicyStateSerializer)
    def get(self, request, org_slug: str, campaign_id):
        return Response(_policy_response(campaign_for(request, campaign_id, Perm.VIEW_ALL_CAMPAIGNS)))

    @extend_schema(request=CampaignPolicySerializer, responses=CampaignPolicyStateSerializer)
    def patch(self, request, org_slug: str, campaign_id):
        campaign = campaign_for(request, campaign_id)
        serializer = CampaignPolicySerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            configuration.campaign_policy_update(
                campaign=campaign,
                actor=request.membership,
                values=dict(serializer.validated_data),
                request=request,
            )
        except services.NotificationError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(_policy_response(campaign))


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = list(selectors.NOTIFICATION_LOG_FIELDS)


class NotificationPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 100


class CampaignNotificationsAPI(OrgAPIView):
    """The notification log of one campaign, newest first (cursor pagination)."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}
    requires_plan = True
    pagination_class = NotificationPagination

    @extend_schema(responses=NotificationSerializer(many=True))
    def get(self, request, org_slug: str, campaign_id):
        campaign = campaign_for(request, campaign_id, Perm.VIEW_ALL_CAMPAIGNS)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            Notification.objects.filter(campaign=campaign).order_by("-created_at", "-id"), request, view=self
        )
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)


class FailedNotificationSerializer(serializers.ModelSerializer):
    campaign = serializers.UUIDField(source="campaign_id", allow_null=True, read_only=True)

    class Meta:
        model = Notification
        fields = [*selectors.NOTIFICATION_LOG_FIELDS, "campaign"]


class FailedNotificationsAPI(OrgAPIView):
    """Notifications of the organization that could not be delivered after their last attempt, newest first
    (cursor pagination), as under Settings → Notifications."""

    required_perms = {"GET": Perm.MANAGE_SETTINGS}
    pagination_class = NotificationPagination

    @extend_schema(
        responses=inline_serializer(
            "FailedNotificationPage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": FailedNotificationSerializer(many=True),
            },
        ),
        parameters=[OpenApiParameter("cursor", str, description="The page to read (from `next` or `previous`)")],
    )
    def get(self, request, org_slug: str):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.failed_notifications_all(), request, view=self
        )
        return paginator.get_paginated_response(FailedNotificationSerializer(page, many=True).data)


class NotificationRetrySerializer(serializers.Serializer):
    notification_ids = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_empty=False,
        max_length=1000,
        help_text="Failed notifications to send again; leave out to retry every failed notification.",
    )


class NotificationRetryAPI(OrgAPIView):
    """POST: queue failed notifications again (each gets a new set of attempts; an e-mail keeps its
    Message-ID)."""

    required_perms = {"POST": Perm.MANAGE_SETTINGS}

    @extend_schema(
        request=NotificationRetrySerializer,
        responses={202: inline_serializer("NotificationsRetried", {"retried": serializers.IntegerField()})},
    )
    def post(self, request, org_slug: str):
        serializer = NotificationRetrySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data.get("notification_ids")
        try:
            count = delivery.notifications_retry(
                organization=request.organization,
                actor=request.membership,
                notification_ids=[str(i) for i in ids] if ids is not None else None,
                request=request,
            )
        except services.NotificationError as exc:
            if ids is not None:
                raise ValidationError({"notification_ids": [str(exc)]}) from exc
            raise ValidationError({"detail": str(exc)}) from exc
        return Response({"retried": count}, status=status.HTTP_202_ACCEPTED)


class PreferenceSerializer(serializers.Serializer):
    email = serializers.BooleanField(help_text="E-mail (always on for the mandatory events)")
    slack = serializers.BooleanField(help_text="Slack direct messages")
    teams = serializers.BooleanField(help_text="Microsoft Teams (posted to the organization's channel)")
    mandatory_email_events = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Events e-mailed whatever is chosen"
    )


class PreferenceUpdateSerializer(serializers.Serializer):
    email = serializers.BooleanField(required=False)
    slack = serializers.BooleanField(required=False)
    teams = serializers.BooleanField(required=False)


class MyNotificationPreferencesAPI(OrgAPIView):
    """The caller's own notification channels, as on My notifications: every member, for themselves only."""

    required_perms = {"GET": ANY_MEMBER, "PATCH": ANY_MEMBER}

    def _answer(self, preference) -> Response:
        return Response(
            {
                "email": preference.email,
                "slack": preference.slack,
                "teams": preference.teams,
                "mandatory_email_events": sorted(event.value for event in MANDATORY_EMAIL_EVENTS),
            }
        )

    @extend_schema(operation_id="my_notification_preferences", responses=PreferenceSerializer)
    def get(self, request, org_slug):
        return self._answer(selectors.preference_of(membership=request.membership))

    @extend_schema(
        operation_id="my_notification_preferences_update",
        request=PreferenceUpdateSerializer,
        responses=PreferenceSerializer,
    )
    def patch(self, request, org_slug):
        unknown = sorted(set(request.data) - set(PreferenceUpdateSerializer().fields))
        if unknown:
            raise ValidationError({field: ["not a channel; use email, slack or teams"] for field in unknown})
        data = PreferenceUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        current = selectors.preference_of(membership=request.membership)
        choices = {name: data.validated_data.get(name, getattr(current, name)) for name in ("email", "slack", "teams")}
        return self._answer(configuration.notification_preference_update(membership=request.membership, **choices))
