"""Reviewing API: a campaign's items (filtered, cursor-paginated), one item with its history, decisions (single
and bulk), sign-off, and the caller's reviews."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.pagination import IdCursorPagination
from thalian.permissions import Perm

from . import review_selectors as sel
from .decisions import (
    MAX_COMMENT_LENGTH,
    MAX_REASON_LENGTH,
    decisions_bulk_apply,
    review_item_decide,
    review_sign_off,
)
from .models import Decision, DecisionEvent, ItemReassignment
from .selectors import campaign_access, reviewer_kind
from .stages import decision_path_text

MAX_API_ITEM_IDS = 10000


def _drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "message_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


# --------------------------------------------------------------------------------------------------
# Serializers
# --------------------------------------------------------------------------------------------------


class IdentitySnapshotSerializer(serializers.Serializer):
    email = serializers.CharField(source="identity_email")
    name = serializers.CharField(source="identity_name")
    department = serializers.CharField(source="identity_department")
    manager_email = serializers.CharField(source="identity_manager_email")
    kind = serializers.CharField(source="identity_kind")
    status = serializers.CharField(source="identity_status")


class ApplicationSnapshotSerializer(serializers.Serializer):
    name = serializers.CharField(source="application_name")
    category = serializers.CharField(source="application_category")
    sanctioned = serializers.BooleanField(source="application_sanctioned")


class RecommendationSerializer(serializers.Serializer):
    decision = serializers.CharField(source="recommendation")
    reason = serializers.CharField(source="recommendation_reason")


class StageDecisionSerializer(serializers.Serializer):
    stage = serializers.IntegerField()
    decision = serializers.CharField(allow_null=True, help_text="Null when the stage's deadline carried it forward.")
    reason = serializers.CharField()
    decided_by = serializers.CharField()
    decided_by_role = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)


class ReviewItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    identity = IdentitySnapshotSerializer(source="*")
    application = ApplicationSnapshotSerializer(source="*")
    role = serializers.CharField()
    last_used = serializers.DateTimeField(allow_null=True)
    findings = serializers.ListField(child=serializers.CharField())
    recommendation = RecommendationSerializer(source="*")
    reviewer = serializers.CharField(source="reviewer_email", help_text="The assigned reviewer's e-mail.")
    reviewer_kind = serializers.SerializerMethodField(
        help_text="member (a member of the organization), guest (reviews through a personal link) or empty when "
        "the item is unassigned."
    )
    decision = serializers.SerializerMethodField(help_text="approve, revoke or exception; null while pending.")
    reason = serializers.CharField(source="decision_reason")
    comment = serializers.CharField(source="decision_comment")
    decided_by = serializers.SerializerMethodField(help_text="E-mail of who decided; \"system\" for default outcomes.")
    decided_on_behalf_of = serializers.SerializerMethodField(
        help_text="When a delegate decided: the member (or guest) whose review it was; null otherwise."
    )
    decided_at = serializers.DateTimeField(allow_null=True)
    signed_off_at = serializers.DateTimeField(allow_null=True)
    ticket_url = serializers.CharField()
    ticket_key = serializers.CharField()
    ticket_status = serializers.CharField()
    ticket_error = serializers.CharField()
    remediation_status = serializers.CharField()
    exception_expires_on = serializers.DateField(
        allow_null=True, help_text="For an exception: the last day it holds; null otherwise."
    )
    renewal_of = serializers.IntegerField(
        source="renewal_of_id", allow_null=True,
        help_text="In an exception renewals campaign: the id of the expired exception item this re-reviews.",
    )
    stage = serializers.IntegerField(help_text="The stage the item is pending in, or was finally decided in (1 in "
                                               "a single-stage campaign).")
    stage_decisions = serializers.SerializerMethodField(
        help_text="Decisions stage by stage, oldest first: the stages the item passed, then its current decision. "
        "A reviewer of a stage that hides earlier decisions sees only the current one."
    )
    decision_path = serializers.SerializerMethodField(
        help_text="The decision and its path in words, e.g. \"Revoked at stage 2 by x after approval at stage 1 "
        "by y\" (empty in a single-stage campaign)."
    )

    @extend_schema_field(StageDecisionSerializer(many=True))
    def get_stage_decisions(self, item) -> list[dict]:
        return sel.item_stage_decisions(item, hidden_stages=self.context.get("hidden_stages", frozenset()))

    def get_decision_path(self, item) -> str:
        if not self.context.get("multi_stage") or item.stage in self.context.get("hidden_stages", frozenset()):
            return ""
        return decision_path_text(item)

    def get_reviewer_kind(self, item) -> str:
        return reviewer_kind(item.reviewer_id, item.guest_id)

    def get_decision(self, item) -> str | None:
        return item.decision or None

    def get_decided_by(self, item) -> str | None:
        return item.decided_by_email or None

    def get_decided_on_behalf_of(self, item) -> str | None:
        return item.decided_on_behalf_of_email or None


class DecisionEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DecisionEvent
        fields = [
            "id", "decision", "reason", "comment", "expires_on", "actor_email", "actor_role", "on_behalf_of_email",
            "kind", "created_at", "stage", "hash",
        ]


class ReassignmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ItemReassignment
        fields = ["from_email", "to_email", "by_email", "reason", "kind", "created_at"]


class ReviewItemDetailSerializer(ReviewItemSerializer):
    history = serializers.SerializerMethodField()
    assignment_note = serializers.CharField()
    removal_confirmed_by = serializers.CharField(
        source="removal_confirmed_by_email", help_text="Who confirmed the removal by hand; empty otherwise."
    )
    removal_confirmed_at = serializers.DateTimeField(allow_null=True)
    removal_comment = serializers.CharField(help_text="How the remediation owner says the access was removed.")
    reassignments = serializers.SerializerMethodField(
        help_text="Every hop of the item between reviewers (from, to, by, reason, kind), oldest first."
    )

    @extend_schema_field(DecisionEventSerializer(many=True))
    def get_history(self, item) -> list[dict]:
        return DecisionEventSerializer(self.context["history"], many=True).data

    @extend_schema_field(ReassignmentSerializer(many=True))
    def get_reassignments(self, item) -> list[dict]:
        return ReassignmentSerializer(item.reassignments.order_by("id"), many=True).data


class DecisionInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON_LENGTH, default="")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_COMMENT_LENGTH, default="")
    expires_on = serializers.DateField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Exceptions only: the last day the exception holds (after today, within the organization's "
        "maximum). Omitted: today plus the organization's default.",
    )


class ItemFilterSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=sel.DECISION_STATES, required=False)
    application = serializers.CharField(required=False)
    department = serializers.CharField(required=False)
    identity_kind = serializers.CharField(required=False)
    status = serializers.CharField(required=False)
    role = serializers.CharField(required=False)
    finding = serializers.CharField(required=False)
    recommendation = serializers.CharField(required=False)
    reviewer = serializers.CharField(required=False)
    search = serializers.CharField(required=False)
    stage = serializers.ChoiceField(choices=sel.CHOICES["stage"], required=False)


class ItemSelectionSerializer(serializers.Serializer):
    """Which items a bulk request applies to: item_ids, or every item matching filter."""

    item_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False, max_length=MAX_API_ITEM_IDS
    )
    filter = serializers.JSONField(
        required=False,
        help_text="The items query keys (decision, application, department, identity_kind, status, role, finding, "
        "recommendation, reviewer, search): the request applies to every matching item, on all pages.",
    )

    def validate(self, attrs):
        if ("item_ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError("Send either item_ids or filter, not both and not neither.")
        if "filter" in attrs:
            try:
                attrs["filter"] = sel.item_filter_parse_strict(attrs["filter"])
            except DjangoValidationError as exc:
                raise _drf_error(exc) from exc
        return attrs


class BulkDecisionInputSerializer(ItemSelectionSerializer, DecisionInputSerializer):
    include_recommended_revoke = serializers.BooleanField(
        required=False,
        default=False,
        help_text="An approval leaves out items recommended for revoke unless this is true. Items whose identity "
        "is the caller are always left out.",
    )


class MyReviewSerializer(serializers.Serializer):
    campaign_id = serializers.UUIDField(source="campaign.pk")
    title = serializers.CharField(source="campaign.title")
    status = serializers.CharField(source="campaign.status")
    due_date = serializers.DateField(source="campaign.due_date")
    total = serializers.IntegerField()
    decided = serializers.IntegerField()
    open = serializers.IntegerField()
    signed_off = serializers.BooleanField(source="is_signed_off")


# --------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------

FILTER_PARAMETERS = [
    OpenApiParameter("decision", OpenApiTypes.STR, enum=sel.DECISION_STATES, description="Decision state."),
    OpenApiParameter("application", OpenApiTypes.STR, description="Application name (exact)."),
    OpenApiParameter("department", OpenApiTypes.STR, description="Identity department (exact)."),
    OpenApiParameter("identity_kind", OpenApiTypes.STR, enum=sel.CHOICES["identity_kind"]),
    OpenApiParameter("status", OpenApiTypes.STR, enum=sel.CHOICES["status"], description="Identity status."),
    OpenApiParameter("role", OpenApiTypes.STR, description="Role (case-insensitive exact)."),
    OpenApiParameter("finding", OpenApiTypes.STR, enum=sel.CHOICES["finding"]),
    OpenApiParameter("recommendation", OpenApiTypes.STR, enum=sel.CHOICES["recommendation"]),
    OpenApiParameter("reviewer", OpenApiTypes.STR, description="\"me\" or a reviewer's e-mail."),
    OpenApiParameter("search", OpenApiTypes.STR, description="Text in e-mail, name, application, role or department."),
    OpenApiParameter("stage", OpenApiTypes.STR, enum=sel.CHOICES["stage"],
                     description="Items pending in, or finally decided in, this stage."),
]


class ItemCursorPagination(IdCursorPagination):
    page_size = sel.DEFAULT_PAGE_SIZE
    max_page_size = sel.MAX_PAGE_SIZE


class _CampaignMixin:
    def campaign(self, request, campaign_id):
        return campaign_access(membership=request.membership, campaign_id=campaign_id)


class ItemListAPI(_CampaignMixin, OrgAPIView, generics.ListAPIView):
    """Items of a campaign the caller may see (reviewers: the items assigned to them), in id order."""

    required_perms = {"GET": Perm.VIEW_CAMPAIGNS}
    requires_plan = True
    serializer_class = ReviewItemSerializer
    pagination_class = ItemCursorPagination

    def get_queryset(self):
        campaign = self.campaign(self.request, self.kwargs["campaign_id"])
        self.hidden_stages = sel.stages_hiding_earlier_decisions(campaign=campaign, membership=self.request.membership)
        self.multi_stage = campaign.is_multi_stage
        try:
            flt = sel.item_filter_parse(self.request.query_params)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return sel.review_items_matching(campaign=campaign, membership=self.request.membership, flt=flt)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "hidden_stages": getattr(self, "hidden_stages", frozenset()),
                "multi_stage": getattr(self, "multi_stage", False)}

    @extend_schema(parameters=FILTER_PARAMETERS, operation_id="campaign_items_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ItemDetailAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"GET": Perm.VIEW_CAMPAIGNS}
    requires_plan = True

    @extend_schema(responses=ReviewItemDetailSerializer, operation_id="campaign_item_retrieve")
    def get(self, request, org_slug, campaign_id, item_id):
        campaign = self.campaign(request, campaign_id)
        item = sel.review_item_get(membership=request.membership, campaign=campaign, item_id=item_id)
        history = list(sel.review_item_history(item=item))
        hidden = sel.stages_hiding_earlier_decisions(campaign=campaign, membership=request.membership)
        if item.stage in hidden:  # the stage reviews blind: earlier stages' events are not shown either
            history = [e for e in history if e.stage == item.stage]
        return Response(ReviewItemDetailSerializer(item, context={"history": history, "hidden_stages": hidden,
                                                                  "multi_stage": campaign.is_multi_stage}).data)


class ItemDecisionAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(request=DecisionInputSerializer, responses=ReviewItemSerializer, operation_id="campaign_item_decide")
    def post(self, request, org_slug, campaign_id, item_id):
        campaign = self.campaign(request, campaign_id)
        item = sel.review_item_get(membership=request.membership, campaign=campaign, item_id=item_id)
        data = DecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            item = review_item_decide(item=item, actor=request.membership, request=request, **data.validated_data)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        context = {"multi_stage": campaign.is_multi_stage,
                   "hidden_stages": sel.stages_hiding_earlier_decisions(campaign=campaign, membership=request.membership)}
        return Response(ReviewItemSerializer(item, context=context).data)


class BulkDecisionAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(
        request=BulkDecisionInputSerializer,
        responses=inline_serializer(
            "BulkDecisionResult",
            {
                "updated": serializers.IntegerField(),
                "skipped": serializers.DictField(
                    child=serializers.IntegerField(),
                    help_text="Items left out, by cause: self_review (the caller's own access), "
                    "recommended_revoke (an approval without include_recommended_revoke), earlier_stage (items the "
                    "caller decided in an earlier stage of a multi-stage campaign).",
                ),
                "recommended_revoke_causes": serializers.DictField(
                    child=serializers.IntegerField(),
                    help_text="The recommended_revoke items left out, by finding: terminated, orphaned, dormant, "
                    "never_used, other.",
                ),
            },
        ),
        operation_id="campaign_bulk_decide",
    )
    def post(self, request, org_slug, campaign_id):
        campaign = self.campaign(request, campaign_id)
        data = BulkDecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        membership = request.membership
        try:
            if "filter" in values:
                flt = values["filter"]
                items = sel.review_items_matching(campaign=campaign, membership=membership, flt=flt)
                scope_label = f"all matching ({flt.describe()})"
            else:
                items = sel.review_items_selected(campaign=campaign, membership=membership, item_ids=values["item_ids"])
                scope_label = "selected"
            result = decisions_bulk_apply(
                campaign=campaign,
                actor=membership,
                items=items,
                decision=values["decision"],
                reason=values["reason"],
                comment=values["comment"],
                include_recommended_revoke=values["include_recommended_revoke"],
                expires_on=values["expires_on"],
                scope_label=scope_label,
                request=request,
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(
            {
                "updated": result.updated,
                "skipped": result.skipped,
                "recommended_revoke_causes": result.recommended_revoke_causes,
            }
        )


class SignOffAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(
        request=None,
        responses=inline_serializer("SignOffResult", {"signed_off": serializers.IntegerField()}),
        operation_id="campaign_sign_off",
    )
    def post(self, request, org_slug, campaign_id):
        campaign = self.campaign(request, campaign_id)
        try:
            count = review_sign_off(campaign=campaign, actor=request.membership, request=request)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response({"signed_off": count}, status=status.HTTP_200_OK)


class MyReviewsAPI(OrgAPIView):
    required_perms = {"GET": Perm.VIEW_CAMPAIGNS}
    requires_plan = True

    @extend_schema(responses=MyReviewSerializer(many=True), operation_id="my_reviews_list")
    def get(self, request, org_slug):
        return Response(MyReviewSerializer(sel.my_reviews(membership=request.membership), many=True).data)

