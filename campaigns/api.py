"""Campaign lifecycle API under /api/v1/orgs/<slug>/campaigns/.

Creating a campaign makes a draft (or a scheduled campaign when `launch_at` is in the future); `launch: true`
creates and launches in one request, atomically: if the launch is refused (stale data without an override,
nothing in scope) nothing is created. `POST campaigns/<id>/launch/` launches a draft; both answer 202 with the
campaign in `launching` while the snapshot is taken in the background, and 409 with `stale_applications` when
the data freshness check blocks the launch (an admin may pass `freshness_override_reason`).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.permissions import Perm

from . import decision_quality, guests, remediation, selectors, services, stages
from .launch import campaign_launch, campaign_launch_progress
from .models import (
    MAX_STAGES,
    Campaign,
    CampaignStatus,
    DeadlineOutcome,
    Decision,
    DefaultOutcome,
    RemediationOwnerSource,
    ReviewerStrategy,
)
from .scheduling import CampaignNotDeletable, ScheduleError, campaign_delete, schedule_clean

IDENTITY_KINDS = ["human", "service_account", "bot", "ai_agent"]


class CampaignPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ScopeSerializer(serializers.Serializer):
    applications = serializers.ListField(child=serializers.CharField(), required=False,
                                         help_text="Application names (case-insensitive).")
    categories = serializers.ListField(child=serializers.CharField(), required=False)
    sanctioned_only = serializers.BooleanField(required=False)
    min_users = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                         help_text="Only applications with at least this many users.")
    departments = serializers.ListField(child=serializers.CharField(), required=False)
    identity_kinds = serializers.ListField(child=serializers.ChoiceField(choices=IDENTITY_KINDS), required=False)
    preset = serializers.ChoiceField(choices=["non_human", "ai_agents"], required=False, allow_null=True,
                                     help_text="non_human: service accounts, bots and AI agents; ai_agents: AI "
                                               "agents only.")
    privileged_only = serializers.BooleanField(required=False)


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    decided = serializers.IntegerField()
    pending = serializers.IntegerField()
    approve = serializers.IntegerField()
    revoke = serializers.IntegerField()
    exception = serializers.IntegerField()
    overdue = serializers.IntegerField()


class StaleApplicationSerializer(serializers.Serializer):
    name = serializers.CharField()
    last_synced_at = serializers.DateTimeField(allow_null=True)


class RemediationProgressSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(help_text="Revoked items.")
    proven = serializers.IntegerField(help_text="Removal proven: verified_removed + confirmed_removed.")
    verified_removed = serializers.IntegerField(help_text="Gone at a later import or sync of the application.")
    confirmed_removed = serializers.IntegerField(help_text="Confirmed removed by the remediation owner, with a "
                                                           "comment (\"manually confirmed\" in the evidence).")
    action_required = serializers.IntegerField(help_text="Still present at the last import or sync.")
    pending = serializers.IntegerField(help_text="Not checked yet.")
    percent = serializers.IntegerField()


class RemediationOwnerRowSerializer(serializers.Serializer):
    application_name = serializers.CharField()
    owner_email = serializers.CharField()
    source = serializers.ChoiceField(choices=RemediationOwnerSource.choices)
    note = serializers.CharField()
    open = serializers.IntegerField(help_text="Revokes of this application still to be proven removed.")


class StageInputSerializer(serializers.Serializer):
    """One review stage when creating a campaign (documentation of the shape; the service validates it and
    names the stage and field of any error)."""

    reviewer_strategy = serializers.ChoiceField(choices=ReviewerStrategy.choices)
    reviewers = serializers.JSONField(required=False, help_text="members strategy: e-mails, as for the campaign.")
    fallback_reviewer = serializers.EmailField(help_text="Member who gets this stage's items the strategy cannot "
                                                         "resolve, and items whose candidate decided an earlier stage.")
    duration_days = serializers.IntegerField(min_value=1, help_text="Days an item has in this stage from when it "
                                                                    "enters it.")
    advance_on = serializers.ListField(
        child=serializers.ChoiceField(choices=Decision.choices), required=False,
        help_text="Decisions that move an item to the next stage (default approve and exception); the others are "
                  "final.",
    )
    show_earlier_decisions = serializers.BooleanField(
        required=False, default=True, help_text="Whether this stage's reviewers see earlier stages' decisions."
    )
    deadline_outcome = serializers.ChoiceField(
        choices=DeadlineOutcome.choices, required=False, default=DeadlineOutcome.CARRY_FORWARD,
        help_text="Undecided items when their deadline in this stage passes.",
    )


class StageSerializer(StageInputSerializer):
    number = serializers.IntegerField()
    reviewers = serializers.JSONField()
    fallback_reviewer = serializers.CharField()
    duration_days = serializers.IntegerField(allow_null=True)
    advance_on = serializers.ListField(child=serializers.CharField())
    show_earlier_decisions = serializers.BooleanField()
    deadline_outcome = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField(allow_null=True)


@extend_schema_field(StageInputSerializer(many=True))
class StagesField(serializers.JSONField):
    pass


class CampaignSerializer(serializers.ModelSerializer):
    fallback_reviewer = serializers.SerializerMethodField()
    fallback_remediation_owner = serializers.SerializerMethodField()
    remediation_owners = serializers.JSONField(
        help_text="Remediation owners named for this campaign: application name to member e-mail."
    )
    remediation = serializers.SerializerMethodField(
        help_text="Removal of revoked access (single campaign only; null in lists and before launch)."
    )
    remediation_owner_assignments = serializers.SerializerMethodField(
        help_text="Per application, who removes revoked access (resolved at launch; single campaign only)."
    )
    progress = serializers.SerializerMethodField()
    scope = ScopeSerializer()
    stale_applications = StaleApplicationSerializer(many=True)
    reviewers = serializers.JSONField(help_text="Named reviewers (members strategy): application name or \"*\" "
                                                "to e-mails.")
    stages = serializers.SerializerMethodField(
        help_text="The review stages in order (single campaign only; null in lists). A single-stage campaign has one, "
                  "made of its reviewer fields."
    )

    class Meta:
        model = Campaign
        fields = [
            "id", "title", "description", "status", "due_date", "scope", "reviewer_strategy", "reviewers",
            "fallback_reviewer", "reason_required", "default_outcome", "created_at", "launch_at", "launched_at",
            "snapshot_at", "launch_progress", "launch_error", "launch_attempts", "item_count", "stale_applications",
            "freshness_override_reason", "completed_at", "closed_at", "cancelled_at", "cancel_reason", "progress",
            "recurrence", "duration_days", "series", "archived_reason",
            "remediation_owners", "fallback_remediation_owner", "remediating_at", "remediation",
            "remediation_owner_assignments", "stage_count", "stages",
        ]

    @extend_schema_field(StageSerializer(many=True, allow_null=True))
    def get_stages(self, obj) -> list | None:
        if not self.context.get("detail"):
            return None
        rows = stages.campaign_stages(campaign=obj)
        if not rows:
            fallback = obj.fallback_reviewer
            return [{"number": 1, "reviewer_strategy": obj.reviewer_strategy, "reviewers": obj.reviewers,
                     "fallback_reviewer": fallback.user.email if fallback else "", "duration_days": None,
                     "advance_on": [], "show_earlier_decisions": True, "deadline_outcome": "", "started_at": None}]
        return [
            {"number": s.number, "reviewer_strategy": s.reviewer_strategy, "reviewers": s.reviewers,
             "fallback_reviewer": s.fallback_reviewer.user.email, "duration_days": s.duration_days,
             "advance_on": s.advance_on, "show_earlier_decisions": s.show_earlier_decisions,
             "deadline_outcome": s.deadline_outcome,
             "started_at": serializers.DateTimeField().to_representation(s.started_at) if s.started_at else None}
            for s in rows
        ]

    def get_fallback_reviewer(self, obj) -> str | None:
        fallback = obj.fallback_reviewer
        return fallback.user.email if fallback is not None else None

    def get_fallback_remediation_owner(self, obj) -> str | None:
        fallback = obj.fallback_remediation_owner
        return fallback.user.email if fallback is not None else None

    @extend_schema_field(RemediationProgressSerializer(allow_null=True))
    def get_remediation(self, obj) -> dict | None:
        if not self.context.get("detail") or obj.snapshot_at is None:
            return None
        return remediation.campaign_remediation_progress(campaign=obj)

    @extend_schema_field(RemediationOwnerRowSerializer(many=True, allow_null=True))
    def get_remediation_owner_assignments(self, obj) -> list | None:
        if not self.context.get("detail") or obj.snapshot_at is None:
            return None
        rows = remediation.campaign_remediation_owners(campaign=obj)
        return RemediationOwnerRowSerializer(rows, many=True).data

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj) -> dict:
        progress = self.context.get("progress", {}).get(obj.pk)
        if progress is None:
            progress = selectors.campaign_progress(campaign=obj)
        return progress.as_dict()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.recurrence == "every_days":
            data["recurrence"] = {"every_days": instance.recurrence_every_days}
        if instance.status == "launching":
            data["launch_progress"] = campaign_launch_progress(campaign=instance)
        return data


class CampaignWriteSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    due_date = serializers.DateField()
    scope = ScopeSerializer(required=False)
    reviewer_strategy = serializers.ChoiceField(choices=ReviewerStrategy.choices,
                                                default=ReviewerStrategy.APPLICATION_OWNER)
    reviewers = serializers.JSONField(
        required=False, default=None,
        help_text="members strategy: a list of member e-mails for every application, or an object mapping an "
                  "application name (or \"*\" for the others) to e-mails; several reviewers share an application.",
    )
    fallback_reviewer = serializers.EmailField(
        required=False, default=None, allow_null=True,
        help_text="Member who gets items the strategy cannot resolve (required without stages).",
    )
    stages = StagesField(
        required=False, default=None, allow_null=True,
        help_text=f"1 to {MAX_STAGES} review stages, instead of reviewer_strategy, reviewers and fallback_reviewer: "
                  "stage 1 reviews every item; an item goes on to the next stage when its decision is in the stage's "
                  "advance_on and its reviewer signs off.",
    )
    remediation_owners = serializers.JSONField(
        required=False, default=None,
        help_text="Remediation owner per application, overriding the application's remediation owner (else its "
                  "owner): an object of application name to member e-mail.",
    )
    fallback_remediation_owner = serializers.EmailField(
        required=False, default=None, allow_null=True,
        help_text="Member who removes access of applications whose remediation owner is not a member who can "
                  "(defaults to the fallback reviewer).",
    )
    reason_required = serializers.BooleanField(required=False, default=True)
    default_outcome = serializers.ChoiceField(choices=DefaultOutcome.choices, default=DefaultOutcome.NONE)
    launch_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                          help_text="Launch automatically at this time (status scheduled).")
    recurrence = serializers.JSONField(
        required=False, default="",
        help_text='"monthly", "quarterly", "semiannual", "yearly", or {"every_days": N}; empty: does not recur.',
    )
    recurrence_every_days = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    duration_days = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)


    def validate(self, attrs):
        given = set(self.initial_data) if isinstance(self.initial_data, dict) else set()
        if attrs.get("stages") is not None:
            both = sorted(given & {"reviewer_strategy", "reviewers", "fallback_reviewer"})
            if both:
                raise exceptions.ValidationError({both[0]: [
                    f"give {', '.join(both)} inside stages (stage 1), not next to them"]})
            for key in ("reviewer_strategy", "reviewers", "fallback_reviewer"):
                attrs.pop(key, None)
        try:
            return schedule_clean(attrs, creating=not isinstance(self, CampaignUpdateSerializer))
        except ScheduleError as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from exc


class CampaignCreateSerializer(CampaignWriteSerializer):
    launch = serializers.BooleanField(required=False, default=False,
                                      help_text="Launch immediately after creating (all or nothing).")
    freshness_override_reason = serializers.CharField(required=False, allow_blank=True, default="")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # With duration_days the due date follows from the launch date.
        self.fields["due_date"].required = False


class CampaignUpdateSerializer(CampaignWriteSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for f in self.fields.values():
            f.required = False
            f.default = serializers.empty


class LaunchSerializer(serializers.Serializer):
    freshness_override_reason = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Admins only: launch although some applications' data is stale; recorded and audited.",
    )


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True)


class ReassignSerializer(serializers.Serializer):
    from_reviewer = serializers.EmailField(allow_null=True, help_text="Current reviewer; null for unassigned items.")
    to_reviewer = serializers.EmailField()
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class PreviewRequestSerializer(serializers.Serializer):
    scope = ScopeSerializer()


PREVIEW_RESPONSE = inline_serializer(
    "CampaignScopePreview",
    {
        "applications": serializers.IntegerField(),
        "identities": serializers.IntegerField(),
        "items": serializers.IntegerField(),
        "application_list": serializers.ListField(child=serializers.DictField()),
        "stale_applications": StaleApplicationSerializer(many=True),
    },
)
REASSIGN_RESPONSE = inline_serializer(
    "CampaignReassignResult",
    {"reassigned": serializers.IntegerField(), "skipped_self_review": serializers.IntegerField()},
)
PROGRESS_DETAIL_RESPONSE = inline_serializer(
    "CampaignProgressDetail",
    {
        "progress": ProgressSerializer(),
        "by_application": serializers.ListField(child=serializers.DictField()),
        "by_reviewer": serializers.ListField(child=serializers.DictField()),
        "by_stage": serializers.ListField(
            child=serializers.DictField(),
            help_text="Multi-stage campaigns, per stage: reached (items that entered it), pending, decided, "
                      "signed_off, moved_on, final, overdue, unassigned, done, percent; empty for a single stage.",
        ),
    },
)
ERROR_RESPONSE = inline_serializer("CampaignError", {"detail": serializers.CharField()})
FRESHNESS_RESPONSE = inline_serializer(
    "CampaignConflict",
    {
        "detail": serializers.CharField(),
        "stale_applications": StaleApplicationSerializer(
            many=True, required=False,
            help_text="Only when stale data blocks the launch: the applications whose data is too old",
        ),
    },
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The campaign's state does not allow this."


def api_error(exc: services.CampaignError) -> Response:
    """CampaignError -> 409 for state conflicts and blocked launches (with the stale list), 400 otherwise."""
    if isinstance(exc, services.FreshnessError):
        return Response({"detail": exc.message, "stale_applications": [s.as_dict() for s in exc.stale]},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, services.CampaignLocked) or exc.field == "status":
        return Response({"detail": exc.message}, status=status.HTTP_409_CONFLICT)
    field = exc.field or "non_field_errors"
    return Response({"detail": f"Invalid input. {field}: {exc.message}", "errors": {field: [exc.message]}},
                    status=status.HTTP_400_BAD_REQUEST)


def _validated(serializer_class, request, **kwargs) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class CampaignBaseAPI(OrgAPIView):
    requires_plan = True

    def get_campaign(self, campaign_id, perm: Perm = Perm.VIEW_CAMPAIGNS) -> Campaign:
        return selectors.campaign_access(membership=self.request.membership, campaign_id=campaign_id, perm=perm)

    def campaign_response(self, campaign: Campaign, code: int = status.HTTP_200_OK) -> Response:
        campaign = Campaign.objects.select_related(
            "fallback_reviewer__user", "fallback_remediation_owner__user"
        ).get(pk=campaign.pk)
        return Response(CampaignSerializer(campaign, context={"detail": True}).data, status=code)

    def handle_exception(self, exc):
        if isinstance(exc, services.CampaignError):
            return api_error(exc)
        if isinstance(exc, PermissionDenied):
            exc = exceptions.PermissionDenied(str(exc) or None)
        return super().handle_exception(exc)


class CampaignListAPI(CampaignBaseAPI):
    required_perms = {"GET": Perm.VIEW_CAMPAIGNS, "POST": Perm.MANAGE_CAMPAIGNS}
    pagination_class = CampaignPagination  # the schema documents the page (next, previous, results)

    @extend_schema(
        operation_id="campaigns_list",
        parameters=[OpenApiParameter("status", str, description="Filter by status (draft, scheduled, launching, "
                                                                "active, remediating, completed, cancelled, archived).")],
        responses=CampaignSerializer(many=True),
    )
    def get(self, request, org_slug):
        qs = selectors.campaigns_visible(membership=request.membership).select_related(
            "fallback_reviewer__user", "fallback_remediation_owner__user"
        )
        wanted = request.query_params.get("status")
        if wanted:
            valid = CampaignStatus.values
            if wanted not in valid:
                raise exceptions.ValidationError({"status": [f"unknown status {wanted!r}; choose from "
                                                             f"{', '.join(valid)}"]})
            qs = qs.filter(status=wanted)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        progress = selectors.campaign_progress_many(campaigns=page)
        data = CampaignSerializer(page, many=True, context={"progress": progress}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="campaigns_create",
        request=CampaignCreateSerializer,
        responses={201: CampaignSerializer, 202: CampaignSerializer, 400: ERROR_RESPONSE, 409: FRESHNESS_RESPONSE},
    )
    def post(self, request, org_slug):
        data = dict(_validated(CampaignCreateSerializer, request))
        launch = data.pop("launch")
        override = data.pop("freshness_override_reason")
        with transaction.atomic():
            campaign = services.campaign_create(organization=request.organization, actor=request.membership,
                                                request=request, **data)
            if launch:
                campaign = campaign_launch(campaign=campaign, actor=request.membership,
                                           freshness_override_reason=override, request=request)
        return self.campaign_response(campaign, status.HTTP_201_CREATED)


class CampaignPreviewAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_preview", request=PreviewRequestSerializer,
                   responses={200: PREVIEW_RESPONSE, 400: ERROR_RESPONSE})
    def post(self, request, org_slug):
        data = _validated(PreviewRequestSerializer, request)
        scope = services.scope_clean(organization=request.organization, scope=data["scope"])
        preview = selectors.campaign_scope_preview(organization=request.organization, scope=scope)
        return Response({
            "applications": preview.application_count,
            "identities": preview.identity_count,
            "items": preview.item_count,
            "application_list": preview.applications,
            "stale_applications": [s.as_dict() for s in preview.stale],
        })


class CampaignDetailAPI(CampaignBaseAPI):
    required_perms = {"GET": Perm.VIEW_CAMPAIGNS, "PATCH": Perm.MANAGE_CAMPAIGNS, "DELETE": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_retrieve", responses=CampaignSerializer)
    def get(self, request, org_slug, campaign_id):
        return self.campaign_response(self.get_campaign(campaign_id))

    @extend_schema(operation_id="campaigns_update", request=CampaignUpdateSerializer,
                   responses={200: CampaignSerializer, 400: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def patch(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        changes = _validated(CampaignUpdateSerializer, request)
        campaign = services.campaign_update(campaign=campaign, actor=request.membership, request=request, **changes)
        return self.campaign_response(campaign)

    @extend_schema(operation_id="campaigns_delete", responses={204: None, 409: ERROR_RESPONSE})
    def delete(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        try:
            campaign_delete(campaign=campaign, actor=request.membership, request=request)
        except CampaignNotDeletable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CampaignLaunchAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_launch", request=LaunchSerializer,
                   responses={202: CampaignSerializer, 400: ERROR_RESPONSE, 409: FRESHNESS_RESPONSE})
    def post(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        data = _validated(LaunchSerializer, request)
        campaign = campaign_launch(campaign=campaign, actor=request.membership, request=request,
                                   freshness_override_reason=data["freshness_override_reason"])
        return self.campaign_response(campaign, status.HTTP_202_ACCEPTED)


class CampaignCancelAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_cancel", request=CancelSerializer,
                   responses={200: CampaignSerializer, 400: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def post(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        data = _validated(CancelSerializer, request)
        campaign = services.campaign_cancel(campaign=campaign, actor=request.membership, reason=data["reason"],
                                            request=request)
        return self.campaign_response(campaign)


class CampaignCloseAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_close", request=None,
                   responses={200: CampaignSerializer, 409: ERROR_RESPONSE})
    def post(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        campaign = services.campaign_close(campaign=campaign, actor=request.membership, request=request)
        return self.campaign_response(campaign)


class CampaignReassignAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_reassign", request=ReassignSerializer,
                   responses={200: REASSIGN_RESPONSE, 400: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def post(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        data = _validated(ReassignSerializer, request)
        members = {}
        for key in ("from_reviewer", "to_reviewer"):
            email = data[key]
            if email is None:
                members[key] = None
                continue
            members[key] = selectors.membership_by_email(organization=request.organization, email=email)
            if members[key] is None:
                raise services.CampaignError(f"{email} is not a member of this organization", field=key)
        result = services.items_reassign(campaign=campaign, actor=request.membership, request=request,
                                         reason=data["reason"], **members)
        return Response({"reassigned": result.reassigned, "skipped_self_review": result.skipped_self_review})


class CampaignProgressAPI(CampaignBaseAPI):
    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_progress", responses=PROGRESS_DETAIL_RESPONSE)
    def get(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.VIEW_ALL_CAMPAIGNS)
        by_reviewer = [
            {k: row[k] for k in ("reviewer_email", "reviewer_kind", "total", "decided", "pending", "approve",
                                 "revoke", "exception", "signed_off", "last_decided_at")}
            for row in selectors.campaign_progress_by_reviewer(campaign=campaign)
        ]
        by_application = [
            {k: row[k] for k in ("application_name", "total", "decided", "pending", "approve", "revoke",
                                 "exception")}
            for row in selectors.campaign_progress_by_application(campaign=campaign)
        ]
        return Response({
            "progress": selectors.campaign_progress(campaign=campaign).as_dict(),
            "by_application": by_application,
            "by_reviewer": by_reviewer,
            "by_stage": stages.campaign_progress_by_stage(campaign=campaign),
        })


class GuestReviewerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    status = serializers.SerializerMethodField(help_text="active, revoked, expired or not_sent.")
    items = serializers.IntegerField(source="total")
    decided = serializers.IntegerField()
    signed_off = serializers.IntegerField()
    link_sent_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, guest) -> str:
        return guests.guest_status(guest)


class CampaignGuestListAPI(CampaignBaseAPI):
    """Guest reviewers: people from the inventory who are not members and review through a personal link."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}

    @extend_schema(operation_id="campaigns_guests_list", responses=GuestReviewerSerializer(many=True))
    def get(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.VIEW_ALL_CAMPAIGNS)
        return Response(GuestReviewerSerializer(selectors.campaign_guests(campaign=campaign), many=True).data)


class CampaignGuestActionAPI(CampaignBaseAPI):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}

    def act(self, request, campaign_id, guest_id, action) -> Response:
        campaign = self.get_campaign(campaign_id, Perm.MANAGE_CAMPAIGNS)
        guest = selectors.campaign_guest_access(campaign=campaign, guest_id=guest_id)
        try:
            action(guest=guest, actor=request.membership, request=request)
        except guests.GuestAdminError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        row = next(g for g in selectors.campaign_guests(campaign=campaign) if g.pk == guest.pk)
        return Response(GuestReviewerSerializer(row).data)


class CampaignGuestRevokeAPI(CampaignGuestActionAPI):
    @extend_schema(operation_id="campaigns_guests_revoke", request=None,
                   responses={200: GuestReviewerSerializer, 400: ERROR_RESPONSE},
                   description="Revoke a guest reviewer's link: it stops working at once.")
    def post(self, request, org_slug, campaign_id, guest_id):
        return self.act(request, campaign_id, guest_id, guests.guest_revoke)


class CampaignGuestResendAPI(CampaignGuestActionAPI):
    @extend_schema(operation_id="campaigns_guests_resend", request=None,
                   responses={200: GuestReviewerSerializer, 400: ERROR_RESPONSE},
                   description="E-mail a new link; the previous one stops working and a revoked guest is restored.")
    def post(self, request, org_slug, campaign_id, guest_id):
        return self.act(request, campaign_id, guest_id, guests.guest_resend)


class ConfirmRemovedSerializer(serializers.Serializer):
    comment = serializers.CharField(
        max_length=remediation.MAX_COMMENT_LENGTH,
        help_text="How the access was removed (e.g. the account was deleted in the admin console on 2 May).",
    )


class ItemConfirmRemovedAPI(CampaignBaseAPI):
    """The remediation owner of the item's application (or an admin) confirms that revoked access is gone.
    Completes a `remediating` campaign once every revoke is proven removed."""

    required_perms = {"POST": Perm.CONFIRM_REMOVAL}

    @extend_schema(operation_id="campaign_item_confirm_removed", request=ConfirmRemovedSerializer,
                   responses={200: inline_serializer("RemovalConfirmed", {
                       "id": serializers.IntegerField(),
                       "remediation_status": serializers.CharField(),
                       "removal_confirmed_by": serializers.CharField(),
                       "removal_confirmed_at": serializers.DateTimeField(),
                       "removal_comment": serializers.CharField(),
                       "campaign_status": serializers.CharField(),
                   }), 400: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def post(self, request, org_slug, campaign_id, item_id):
        item = remediation.removal_item_access(membership=request.membership, campaign_id=campaign_id,
                                               item_id=item_id)
        data = _validated(ConfirmRemovedSerializer, request)
        try:
            item = remediation.review_item_confirm_removed(item=item, actor=request.membership,
                                                           comment=data["comment"], request=request)
        except remediation.RemediationError as exc:
            raise services.CampaignError(exc.message, field=exc.field) from None
        return Response({
            "id": item.pk,
            "remediation_status": item.remediation_status,
            "removal_confirmed_by": item.removal_confirmed_by_email,
            "removal_confirmed_at": serializers.DateTimeField().to_representation(item.removal_confirmed_at),
            "removal_comment": item.removal_comment,
            "campaign_status": item.campaign.status,
        })


class FlagSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=list(decision_quality.FLAG_LABELS))
    label = serializers.CharField()
    message = serializers.CharField()


class ReviewerQualitySerializer(serializers.Serializer):
    reviewer_email = serializers.CharField()
    reviewer_role = serializers.CharField()
    decisions = serializers.IntegerField()
    single_decisions = serializers.IntegerField()
    bulk_decisions = serializers.IntegerField()
    bulk_share_percent = serializers.FloatField()
    median_seconds_between_single = serializers.FloatField(allow_null=True)
    approve_rate_percent = serializers.FloatField()
    approvals_against_recommendation = serializers.IntegerField()
    privileged_approved = serializers.IntegerField()
    longest_burst = serializers.IntegerField()
    flagged_bursts = serializers.IntegerField()
    largest_flagged_burst = serializers.IntegerField()
    quick_privileged_approvals = serializers.IntegerField()
    bulk_approvals_with_recommended_revoke = serializers.IntegerField()
    first_decision_at = serializers.DateTimeField(allow_null=True)
    last_decision_at = serializers.DateTimeField(allow_null=True)
    flags = FlagSerializer(many=True)


class CampaignDecisionQualityAPI(CampaignBaseAPI):
    """Per reviewer: how they decided and whether it looks like rubber-stamping (organization thresholds)."""

    required_perms = {"GET": Perm.VIEW_DECISION_QUALITY}

    @extend_schema(operation_id="campaign_decision_quality", responses=inline_serializer("CampaignDecisionQuality", {
        "thresholds": serializers.DictField(),
        "flagged_reviewers": serializers.IntegerField(),
        "reviewers": ReviewerQualitySerializer(many=True),
    }))
    def get(self, request, org_slug, campaign_id):
        campaign = self.get_campaign(campaign_id, Perm.VIEW_DECISION_QUALITY)
        rows = decision_quality.campaign_decision_quality(campaign=campaign)
        return Response({
            "thresholds": decision_quality.thresholds_for(campaign),
            "flagged_reviewers": sum(1 for r in rows if r.flags),
            "reviewers": ReviewerQualitySerializer([r.as_dict() for r in rows], many=True).data,
        })
