"""Access requests API under /api/v1/orgs/<slug>/access-requests/: submit, list, read with the trail, decide,
cancel, reassign, and the approval policies."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from entitlements.models import Application
from thalian.api import ANY_MEMBER, OrgAPIView
from thalian.permissions import Perm

from . import selectors, services
from .models import AccessRequest, Approval, ApprovalPolicy, RequestStatus, StageKind, TrailEvent


def _raise(exc: services.AccessRequestError):
    raise exceptions.ValidationError({exc.field or "non_field_errors": [exc.message]})


class ApprovalSerializer(serializers.ModelSerializer):
    stage = serializers.SerializerMethodField()
    approver = serializers.CharField(source="approver_email")
    guest = serializers.BooleanField(source="is_guest")

    class Meta:
        model = Approval
        fields = ["stage", "kind", "approver", "guest", "note", "decision", "reason", "decided_by_email",
                  "decided_at", "assigned_at"]

    def get_stage(self, obj) -> int:
        return obj.stage + 1


class TrailSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrailEvent
        fields = ["at", "action", "actor_email", "message", "details"]


class AccessRequestSerializer(serializers.ModelSerializer):
    identity = serializers.CharField(source="identity.email")
    application = serializers.CharField(source="application.name")
    requested_by = serializers.CharField(source="requested_by_email")
    current_stage = serializers.SerializerMethodField()
    ticket = serializers.SerializerMethodField()

    class Meta:
        model = AccessRequest
        fields = ["id", "type", "status", "identity", "application", "role", "reason", "ends_at", "requested_by",
                  "created_at", "approval_deadline", "decided_at", "fulfilled_at", "access_ended_at", "revoked_at",
                  "current_stage", "ticket"]

    def get_current_stage(self, obj) -> int | None:
        return obj.current_stage + 1 if obj.status == RequestStatus.PENDING else None

    def get_ticket(self, obj) -> dict | None:
        if not obj.ticket_state:
            return None
        return {"state": obj.ticket_state, "key": obj.ticket_key, "url": obj.ticket_url, "error": obj.ticket_error}


class AccessRequestDetailSerializer(AccessRequestSerializer):
    approvals = ApprovalSerializer(many=True)
    trail = TrailSerializer(many=True)

    class Meta(AccessRequestSerializer.Meta):
        fields = [*AccessRequestSerializer.Meta.fields, "approvals", "trail"]


class CreateSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="grant or revoke")
    identity = serializers.CharField(required=False, allow_blank=True, allow_null=True,
                                     help_text="E-mail of the identity; default: you.")
    application = serializers.CharField(allow_blank=True)
    role = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    ends_at = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                    help_text="ISO date and time a temporary grant ends; null: permanent.")


class CreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    decision = serializers.CharField(help_text="approve or deny")
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class RequestReassignSerializer(serializers.Serializer):
    to = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)


class RequestPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class AccessRequestListAPI(OrgAPIView):
    """Your requests (default), those waiting for your approval (`tab=approve`) or every request (`tab=all`,
    staff and auditors); `mine=true` is the same as `tab=mine`."""

    required_perms = {"GET": Perm.REQUEST_ACCESS, "POST": Perm.REQUEST_ACCESS}
    pagination_class = RequestPagination  # the schema documents the page (next, previous, results)

    @extend_schema(
        parameters=[OpenApiParameter("status", enum=RequestStatus.values),
                    OpenApiParameter("tab", enum=["mine", "approve", "all"]), OpenApiParameter("mine", bool)],
        responses=AccessRequestSerializer(many=True), summary="List access requests", tags=["access requests"],
    )
    def get(self, request, org_slug):
        status_filter = request.query_params.get("status", "")
        if status_filter and status_filter not in RequestStatus.values:
            raise exceptions.ValidationError({"status": [f"unknown status {status_filter!r}; choose from "
                                                         f"{', '.join(RequestStatus.values)}"]})
        tab = request.query_params.get("tab") or "mine"
        if request.query_params.get("mine") in ("true", "1"):
            tab = "mine"
        if tab not in ("mine", "approve", "all"):
            raise exceptions.ValidationError({"tab": ["choose mine, approve or all"]})
        qs = selectors.requests_list(member=request.membership, tab=tab, status=status_filter)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AccessRequestSerializer(page, many=True).data)

    @extend_schema(request=CreateSerializer, responses={201: CreatedSerializer}, summary="Request access",
                   tags=["access requests"])
    def post(self, request, org_slug):
        data = CreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            req = services.access_request_create(
                actor=request.membership, type=values["type"], identity=values.get("identity") or None,
                application=values["application"], role=values["role"], reason=values["reason"],
                ends_at=values.get("ends_at"), request=request)
        except services.AccessRequestError as exc:
            _raise(exc)
        return Response({"id": str(req.pk), "status": req.status}, status=status.HTTP_201_CREATED)


class AccessRequestDetailAPI(OrgAPIView):
    required_perms = {"GET": Perm.REQUEST_ACCESS}

    @extend_schema(responses=AccessRequestDetailSerializer, summary="An access request with its stages and trail",
                   tags=["access requests"])
    def get(self, request, org_slug, request_id):
        req = selectors.request_for_member(member=request.membership, request_id=request_id)
        return Response(AccessRequestDetailSerializer(req).data)


def _act_on_stage(request, request_id, serializer_class, service) -> Response:
    """A request the member can see, the body checked by ``serializer_class``, then ``service`` called with the
    validated fields; answers the request as it is afterwards."""
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        service(req=req, actor=request.membership, request=request, **data.validated_data)
    except services.AccessRequestError as exc:
        _raise(exc)
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    return Response(AccessRequestDetailSerializer(req).data)


class AccessRequestDecisionAPI(OrgAPIView):
    """The current approver (or their delegate) approves or denies; anyone else gets 403."""

    required_perms = {"POST": ANY_MEMBER}

    @extend_schema(request=DecisionSerializer, responses=AccessRequestDetailSerializer, summary="Decide a stage",
                   tags=["access requests"])
    def post(self, request, org_slug, request_id):
        return _act_on_stage(request, request_id, DecisionSerializer, services.access_request_decide)


class AccessRequestCancelAPI(OrgAPIView):
    required_perms = {"POST": Perm.REQUEST_ACCESS}

    @extend_schema(request=None, responses=AccessRequestSerializer, summary="Cancel your pending request",
                   tags=["access requests"])
    def post(self, request, org_slug, request_id):
        req = selectors.request_for_member(member=request.membership, request_id=request_id)
        try:
            req = services.access_request_cancel(req=req, actor=request.membership, request=request)
        except services.AccessRequestError as exc:
            _raise(exc)
        return Response(AccessRequestSerializer(req).data)


class AccessRequestReassignAPI(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_SETTINGS}

    @extend_schema(request=RequestReassignSerializer, responses=AccessRequestDetailSerializer,
                   summary="Move the current stage to another member (admins)", tags=["access requests"])
    def post(self, request, org_slug, request_id):
        return _act_on_stage(request, request_id, RequestReassignSerializer, services.approval_reassign)


# Approval policies ----------------------------------------------------------------------------------------


class ApprovalStageSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=StageKind.choices)
    members = serializers.ListField(child=serializers.CharField(), required=False)


class PolicySerializer(serializers.ModelSerializer):
    application = serializers.CharField(source="application.name", default=None, allow_null=True)
    fallback = serializers.SerializerMethodField()
    stages = ApprovalStageSerializer(many=True)

    class Meta:
        model = ApprovalPolicy
        fields = ["application", "stages", "fallback", "remind_every_days", "escalate_after_days",
                  "expire_after_days", "updated_at"]

    def get_fallback(self, obj) -> str | None:
        return obj.fallback.user.email if obj.fallback_id else None


class PolicyChangeSerializer(serializers.Serializer):
    stages = serializers.JSONField(required=False, help_text='[{"kind": "manager"}, {"kind": "members", '
                                                             '"members": ["a@example.com"]}]')
    fallback = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    remind_every_days = serializers.JSONField(required=False)
    escalate_after_days = serializers.JSONField(required=False)
    expire_after_days = serializers.JSONField(required=False)


def _application(name: str | None) -> Application | None:
    if not name:
        return None
    app = Application.objects.filter(name__iexact=name).first()
    if app is None:
        raise exceptions.ValidationError({"application": [f"{name} is not an application in the inventory."]})
    return app


class ApprovalPolicyAPI(OrgAPIView):
    """The organization's approval policy, or with `?application=<name>` that application's (its override, or
    the organization's when it has none). PATCH creates the override; DELETE removes it."""

    required_perms = {"GET": Perm.MANAGE_SETTINGS, "PATCH": Perm.MANAGE_SETTINGS, "DELETE": Perm.MANAGE_SETTINGS}

    @extend_schema(parameters=[OpenApiParameter("application", str)], responses=PolicySerializer,
                   summary="Approval policy", tags=["access requests"])
    def get(self, request, org_slug):
        app = _application(request.query_params.get("application"))
        return Response(PolicySerializer(services.policy_for(organization=request.organization, application=app)).data)

    @extend_schema(parameters=[OpenApiParameter("application", str)], request=PolicyChangeSerializer,
                   responses=PolicySerializer, summary="Change the approval policy", tags=["access requests"])
    def patch(self, request, org_slug):
        app = _application(request.query_params.get("application"))
        data = PolicyChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            policy = services.policy_update(organization=request.organization, actor=request.membership,
                                            application=app, changes=dict(data.validated_data), request=request)
        except services.AccessRequestError as exc:
            _raise(exc)
        return Response(PolicySerializer(policy).data)

    @extend_schema(parameters=[OpenApiParameter("application", str, required=True)], request=None,
                   responses={204: None}, summary="Remove an application's override", tags=["access requests"])
    def delete(self, request, org_slug):
        app = _application(request.query_params.get("application"))
        if app is None:
            raise exceptions.ValidationError({"application": ["name the application whose override goes."]})
        services.policy_delete(organization=request.organization, actor=request.membership, application=app,
                               request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)



# "Like another person / job title / department" ---------------------------------------------------------


class LikeModelSerializer(serializers.Serializer):
    identity = serializers.CharField(required=False, help_text="E-mail of the person to match.")
    title = serializers.CharField(required=False, help_text="Job title: what most people with it hold.")
    department = serializers.CharField(required=False, help_text="Department: what most people in it hold.")


class LikeSerializer(serializers.Serializer):
    identity = serializers.CharField(required=False, allow_blank=True, allow_null=True,
                                     help_text="Who the access is for; default: you.")
    like = LikeModelSerializer()
    include_revokes = serializers.BooleanField(required=False, default=False)


class ProposalSerializer(serializers.Serializer):
    type = serializers.CharField()
    application = serializers.CharField()
    role = serializers.CharField()
    why = serializers.CharField()


class LikeAnswerSerializer(serializers.Serializer):
    identity = serializers.CharField()
    lines = ProposalSerializer(many=True)


class LineSerializer(serializers.Serializer):
    type = serializers.CharField()
    application = serializers.CharField()
    role = serializers.CharField()


class BatchSerializer(serializers.Serializer):
    identity = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    ends_at = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    lines = LineSerializer(many=True, allow_empty=True)


class AccessLikeAPI(OrgAPIView):
    """Preview of the access that would make someone's like another person's (or most people's with a job title
    or in a department), from the current inventory. Nothing is requested until the lines are submitted to
    `…/access-requests/batch/`."""

    required_perms = {"POST": Perm.REQUEST_ACCESS}

    @extend_schema(request=LikeSerializer, responses=LikeAnswerSerializer, summary="Preview access like another's",
                   tags=["access requests"])
    def post(self, request, org_slug):
        data = LikeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            target = services.like_target(actor=request.membership, identity=values.get("identity"))
            lines = selectors.access_like(target=target, like=values["like"],
                                          include_revokes=values["include_revokes"])
        except services.AccessRequestError as exc:
            _raise(exc)
        except selectors.LikeError as exc:
            raise exceptions.ValidationError({"like": [str(exc)]}) from None
        return Response({"identity": target.email, "lines": ProposalSerializer(lines, many=True).data})


class AccessBatchAPI(OrgAPIView):
    required_perms = {"POST": Perm.REQUEST_ACCESS}

    @extend_schema(request=BatchSerializer, responses={201: CreatedSerializer(many=True)},
                   summary="Request the kept lines of a preview (all or nothing)", tags=["access requests"])
    def post(self, request, org_slug):
        data = BatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            created = services.access_requests_create_many(
                actor=request.membership, identity=values.get("identity") or None, reason=values["reason"],
                ends_at=values.get("ends_at"), lines=[dict(line) for line in values["lines"]], request=request)
        except services.AccessRequestError as exc:
            _raise(exc)
        return Response([{"id": str(r.pk), "status": r.status} for r in created], status=status.HTTP_201_CREATED)
