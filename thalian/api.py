"""API foundations: Bearer token authentication, organization-scoped views, permission classes, errors."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import outbox, selectors, services, tenancy
from .models import (
    PLAN_REQUIRED_MESSAGE,
    ApiToken,
    AuditEvent,
    Invitation,
    Membership,
    Organization,
    OutboxEvent,
    Plan,
    TicketTrigger,
)
from .permissions import ROLE_CHOICES, Perm, Role, has_perm, perms_for

# In a view's ``required_perms``: the method is open to every member of the organization (their own data).
ANY_MEMBER = "any_member"


class OrgPermission(permissions.BasePermission):
    """Maps HTTP methods to permissions from the role table: view.required_perms = {"GET": Perm.X, ...}.

    The map fails closed: a method the view implements but its map does not name is refused (HEAD and
    OPTIONS follow GET). A method the view does not implement is left to DRF, which answers 405."""

    def has_permission(self, request, view):
        perms = getattr(view, "required_perms", {})
        method = request.method
        perm = perms.get(method)
        if perm is None and method in ("HEAD", "OPTIONS"):
            perm = perms.get("GET")
        if perm is None:
            if not hasattr(view, method.lower()):
                return True  # no handler: DRF answers 405 Method Not Allowed
            raise exceptions.PermissionDenied(f"{method} is not allowed on this endpoint for any role.")
        if perm == ANY_MEMBER:
            return True
        if not has_perm(request.membership.role, perm):
            raise exceptions.PermissionDenied(f"Your role ({request.membership.role}) does not allow this.")
        return True


class OrgAPIView(APIView):
    """Base for everything under /api/v1/orgs/<org_slug>/. Resolves the membership after authentication
    (404 for non-members, and for a token used against another organization), checks the plan when
    `requires_plan`, and runs the handler inside the organization's scope."""

    permission_classes = [permissions.IsAuthenticated, OrgPermission]
    required_perms: dict[str, Perm | str] = {}  # fails closed: an implemented method must be named
    requires_plan = False

    def dispatch(self, request, *args, **kwargs):
        # The scope activated in initial() ends with the view, whatever happens in it (OrganizationScopeMiddleware
        # does the same around the whole request; this also holds where a view is called without it).
        with tenancy.request_scope():
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        slug = kwargs.get("org_slug")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            if token.membership.organization.slug != slug:
                raise Http404
            membership = token.membership
        else:
            membership = (
                Membership.objects.select_related("organization", "user")
                .filter(user=request.user, organization__slug=slug)
                .first()
            )
            if membership is None:
                raise Http404
        request.membership = membership
        request.organization = membership.organization
        tenancy.activate(membership.organization)
        self.check_permissions(request)
        if self.requires_plan and not membership.organization.has_access_reviews:
            raise exceptions.PermissionDenied(PLAN_REQUIRED_MESSAGE)
        self.check_throttles(request)


class ErrorSerializer(serializers.Serializer):
    """The shape of every error answer (see exception_handler)."""

    detail = serializers.CharField(help_text="What is wrong, in one message")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors: field name -> messages",
    )


class MemberInUseSerializer(serializers.Serializer):
    detail = serializers.CharField()
    campaigns = serializers.ListField(child=serializers.CharField(), help_text="Campaigns they are fallback reviewer of")


def exception_handler(exc, context):
    """Errors are JSON with a `detail` message and, for validation errors, field errors under `errors`."""
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = response.data
        if isinstance(data, dict) and "detail" not in data:
            fields = "; ".join(
                f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items()
            )
            response.data = {"detail": f"Invalid input. {fields}".strip(), "errors": data}
        elif isinstance(data, list):
            response.data = {"detail": " ".join(map(str, data)), "errors": {"non_field_errors": data}}
    elif isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": str(exc), **response.data}
    return response


# Platform endpoints: me, members, invitations, tokens, audit events -------------------------------------


def _as_api_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"non_field_errors": exc.messages})


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = fields


class RoleChangeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, default=None)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=ROLE_CHOICES, default=Role.VIEWER)


class TokenSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "active"]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself. Shown once; only its hash is kept.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class OrganizationBriefSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    plan = serializers.CharField()
    access_reviews = serializers.BooleanField(source="has_access_reviews")


class MeSerializer(serializers.Serializer):
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.CharField()
    organization = OrganizationBriefSerializer()
    permissions = serializers.ListField(child=serializers.CharField())
    auth = serializers.ChoiceField(choices=["token", "session"])


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_email")
    target = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "target", "ip_address", "details"]
        read_only_fields = fields

    def get_target(self, obj) -> dict:
        return {"type": obj.target_type, "id": obj.target_id, "label": obj.target_label}


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, allow_blank=True, max_length=80)
    actor = serializers.CharField(required=False, allow_blank=True, max_length=254)
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)

    def validate(self, data):
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise serializers.ValidationError({"date_to": "The end date is before the start date."})
        return data


class AuditEventPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="URL of the next (older) page, or null")
    previous = serializers.URLField(allow_null=True, help_text="URL of the previous (newer) page, or null")
    results = AuditEventSerializer(many=True)


class AuditCursorPagination(CursorPagination):
    """Keyset pages newest first; (organization, -created_at) index serves it at any depth."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class MeView(OrgAPIView):
    required_perms = {"GET": ANY_MEMBER}

    @extend_schema(responses=MeSerializer, summary="Who am I in this organization", tags=["platform"])
    def get(self, request, org_slug):
        m = request.membership
        data = {
            "user": m.user,
            "role": m.role,
            "organization": m.organization,
            "permissions": sorted(p for p, ok in perms_for(m.role).items() if ok),
            "auth": "token" if isinstance(request.auth, ApiToken) else "session",
        }
        return Response(MeSerializer(data).data)


class MemberListView(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_SETTINGS}

    @extend_schema(responses=MemberSerializer(many=True), summary="List members", tags=["platform"])
    def get(self, request, org_slug):
        members = selectors.members_for_organization(organization=request.organization)
        return Response(MemberSerializer(members, many=True).data)


class InvitationListView(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_SETTINGS, "POST": Perm.MANAGE_SETTINGS}

    @extend_schema(responses=InvitationSerializer(many=True), summary="List open invitations", tags=["platform"])
    def get(self, request, org_slug):
        invitations = selectors.open_invitations(organization=request.organization)
        return Response(InvitationSerializer(invitations, many=True).data)

    @extend_schema(
        request=InviteSerializer,
        responses={201: InvitationSerializer},
        summary="Invite a person by e-mail (the invitation link is e-mailed to them)",
        tags=["platform"],
    )
    def post(self, request, org_slug):
        ser = InviteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            invitation, _raw = services.invitation_create(
                actor=request.membership, email=ser.validated_data["email"], role=ser.validated_data["role"],
                request=request,
            )
        except DjangoValidationError as exc:
            raise _as_api_error(exc) from None
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrgAPIView):
    required_perms = {"DELETE": Perm.MANAGE_SETTINGS}

    @extend_schema(responses={204: None}, summary="Withdraw an open invitation", tags=["platform"])
    def delete(self, request, org_slug, pk):
        invitation = get_object_or_404(Invitation.objects.all(), pk=pk)
        services.invitation_revoke(actor=request.membership, invitation=invitation, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _member(request, pk: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "organization"), pk=pk, organization=request.organization
    )


class MemberDetailView(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_SETTINGS, "PATCH": Perm.MANAGE_SETTINGS, "DELETE": Perm.MANAGE_SETTINGS}

    @extend_schema(responses=MemberSerializer, summary="One member", tags=["platform"])
    def get(self, request, org_slug, pk):
        return Response(MemberSerializer(_member(request, pk)).data)

    @extend_schema(
        request=RoleChangeSerializer, responses=MemberSerializer, summary="Change a member's role", tags=["platform"]
    )
    def patch(self, request, org_slug, pk):
        member = _member(request, pk)
        ser = RoleChangeSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            services.membership_role_change(
                actor=request.membership, membership=member, role=ser.validated_data["role"], request=request
            )
        except DjangoValidationError as exc:
            if exc.code in ("cannot_grant", "cannot_manage", "forbidden"):
                raise exceptions.PermissionDenied(" ".join(exc.messages)) from None
            raise _as_api_error(exc) from None
        return Response(MemberSerializer(member).data)

    @extend_schema(
        responses={204: None, 409: MemberInUseSerializer},
        summary="Remove a member (409 naming the campaigns while they are a campaign's fallback reviewer)",
        tags=["platform"],
    )
    def delete(self, request, org_slug, pk):
        member = _member(request, pk)
        try:
            services.membership_remove(actor=request.membership, membership=member, request=request)
        except DjangoValidationError as exc:
            if exc.code in ("cannot_manage", "forbidden"):
                raise exceptions.PermissionDenied(" ".join(exc.messages)) from None
            if exc.code == "in_use":
                return Response(
                    {"detail": " ".join(exc.messages), "campaigns": exc.params["campaigns"]},
                    status=status.HTTP_409_CONFLICT,
                )
            raise _as_api_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class DecisionQualityThresholdsSerializer(serializers.Serializer):
    burst_gap_seconds = serializers.FloatField(help_text="Single decisions closer than this form one burst (60).")
    burst_min_decisions = serializers.IntegerField(help_text="A burst this long or longer ... (50)")
    burst_max_median_seconds = serializers.FloatField(help_text="... at a median gap under this ... (3)")
    burst_min_approve_percent = serializers.FloatField(help_text="... with at least this share approved is flagged (98).")
    privileged_min_seconds = serializers.FloatField(
        help_text="A privileged item approved sooner than this after the previous decision is flagged (5)."
    )
    flag_bulk_recommended_revoke = serializers.BooleanField(
        help_text="Flag bulk approvals that included items recommended for revoke (true)."
    )

    def to_internal_value(self, data):
        # Checked (and merged with the current values) by organization_update, which names every bad key.
        return data


class OrganizationSettingsSerializer(serializers.ModelSerializer):
    plan = serializers.ChoiceField(choices=Plan.choices)
    dormant_days = serializers.IntegerField(min_value=1, max_value=3650)
    freshness_days = serializers.IntegerField(min_value=1, max_value=3650)
    privileged_patterns = serializers.ListField(
        child=serializers.CharField(max_length=100, allow_blank=True), max_length=100, allow_empty=True
    )
    ticket_trigger = serializers.ChoiceField(choices=TicketTrigger.choices)
    exception_default_days = serializers.IntegerField(
        min_value=1, max_value=3650, help_text="Days an exception lasts when the reviewer gives no expiry date."
    )
    exception_max_days = serializers.IntegerField(
        min_value=1, max_value=3650, help_text="The longest exception allowed, in days from the decision."
    )
    guest_reviewers_enabled = serializers.BooleanField(
        help_text="Managers and application owners who are not members review as guests through a personal link."
    )
    access_requests_for_others = serializers.BooleanField(
        help_text="Managers request access for their reports, admins and analysts for anyone (else: themselves only)."
    )
    access_request_max_days = serializers.IntegerField(
        min_value=1, max_value=3650, help_text="The longest temporary access a request may ask for, in days."
    )
    decision_quality_thresholds = DecisionQualityThresholdsSerializer(
        help_text="When reviewers' decisions are flagged; a PATCH may give only the keys it changes."
    )

    class Meta:
        model = Organization
        fields = [
            "slug", "name", "plan", "dormant_days", "privileged_patterns", "freshness_days", "ticket_trigger",
            "exception_default_days", "exception_max_days", "decision_quality_thresholds", "guest_reviewers_enabled",
            "access_requests_for_others", "access_request_max_days",
        ]
        read_only_fields = ["slug"]

    def validate_privileged_patterns(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(pattern for pattern in value if pattern))


class OrganizationSettingsView(OrgAPIView):
    """The settings of the organization, as on its settings page: name, plan, findings thresholds
    (dormant days, privileged patterns), freshness limit and ticket trigger. Super admins only."""

    required_perms = {"GET": Perm.MANAGE_ORGANIZATION, "PATCH": Perm.MANAGE_ORGANIZATION}

    @extend_schema(responses=OrganizationSettingsSerializer, summary="Organization settings", tags=["platform"])
    def get(self, request, org_slug):
        return Response(OrganizationSettingsSerializer(request.organization).data)

    @extend_schema(
        request=OrganizationSettingsSerializer,
        responses=OrganizationSettingsSerializer,
        summary="Change organization settings (findings are recomputed when their thresholds change)",
        tags=["platform"],
    )
    def patch(self, request, org_slug):
        writable = set(OrganizationSettingsSerializer.Meta.fields) - {"slug"}
        unknown = sorted(set(request.data) - writable)
        if unknown:
            raise exceptions.ValidationError(
                {field: [f"not a setting that can be changed; use {', '.join(sorted(writable))}"] for field in unknown}
            )
        ser = OrganizationSettingsSerializer(request.organization, data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        try:
            org = services.organization_update(actor=request.membership, request=request, **ser.validated_data)
        except DjangoValidationError as exc:
            raise _as_api_error(exc) from None
        return Response(OrganizationSettingsSerializer(org).data)


class TokenListView(OrgAPIView):
    required_perms = {"GET": ANY_MEMBER, "POST": ANY_MEMBER}  # each member's own tokens

    @extend_schema(responses=TokenSerializer(many=True), summary="List your API tokens", tags=["platform"])
    def get(self, request, org_slug):
        tokens = selectors.tokens_for_membership(membership=request.membership)
        return Response(TokenSerializer(tokens, many=True).data)

    @extend_schema(
        request=TokenCreateSerializer,
        responses={201: TokenCreatedSerializer},
        summary="Create an API token (the token is in the answer, once)",
        tags=["platform"],
    )
    def post(self, request, org_slug):
        ser = TokenCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        token, raw = services.apitoken_create(membership=request.membership, name=ser.validated_data["name"],
                                              request=request)
        data = TokenCreatedSerializer(token).data
        data["token"] = raw
        response = Response(data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class TokenDetailView(OrgAPIView):
    required_perms = {"DELETE": ANY_MEMBER}  # each member's own tokens

    @extend_schema(responses={204: None}, summary="Revoke one of your API tokens", tags=["platform"])
    def delete(self, request, org_slug, public_id):
        token = get_object_or_404(ApiToken.objects.all(), public_id=public_id, membership=request.membership)
        services.apitoken_revoke(token=token, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditEventListView(OrgAPIView):
    required_perms = {"GET": Perm.VIEW_AUDIT_LOG}
    pagination_class = AuditCursorPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, description="exact action, e.g. member_role_changed"),
            OpenApiParameter("actor", str, description="part of the actor's e-mail"),
            OpenApiParameter("date_from", OpenApiTypes.DATE, description="on or after (UTC date)"),
            OpenApiParameter("date_to", OpenApiTypes.DATE, description="on or before (UTC date)"),
            OpenApiParameter("cursor", str, description="page cursor from `next` / `previous`"),
            OpenApiParameter("page_size", int, description="events per page (max 500)"),
        ],
        responses=AuditEventPageSerializer,
        summary="Audit events, newest first (cursor pagination)",
        tags=["platform"],
    )
    def get(self, request, org_slug):
        ser = AuditFilterSerializer(data=request.query_params)
        ser.is_valid(raise_exception=True)
        filters = selectors.AuditFilters(**{k: v for k, v in ser.validated_data.items() if v not in (None, "")})
        qs = selectors.audit_events(organization=request.organization, filters=filters)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


# Operations: the outbox of hand-offs between areas ---------------------------------------------------------


class ReceiverOutcomeSerializer(serializers.Serializer):
    receiver = serializers.CharField()
    state = serializers.ChoiceField(choices=["done", "retry", "failed"])
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class OutboxEventSerializer(serializers.ModelSerializer):
    receivers = serializers.SerializerMethodField()

    class Meta:
        model = OutboxEvent
        fields = ["id", "name", "state", "created_at", "handled_at", "payload", "receivers"]
        read_only_fields = fields

    @extend_schema_field(ReceiverOutcomeSerializer(many=True))
    def get_receivers(self, obj) -> list[dict]:
        return [
            {"receiver": name, "state": o.get("state", ""), "attempts": o.get("attempts", 0), "error": o.get("error", "")}
            for name, o in sorted(obj.outcomes.items())
        ]


class OutboxBacklogSerializer(serializers.Serializer):
    pending = serializers.IntegerField(help_text="events not handled yet")
    failed = serializers.IntegerField(help_text="events with a receiver that gave up")
    oldest_pending_age_seconds = serializers.FloatField()


class OutboxSummarySerializer(serializers.Serializer):
    backlog = OutboxBacklogSerializer()
    failed = OutboxEventSerializer(many=True, help_text="newest first, at most 200")


class OutboxView(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_ORGANIZATION}

    @extend_schema(
        responses=OutboxSummarySerializer,
        summary="Hand-offs between areas: backlog and events whose receiver gave up",
        tags=["platform"],
    )
    def get(self, request, org_slug):
        org_id = request.organization.pk
        return Response(
            {
                "backlog": outbox.outbox_backlog(organization_id=org_id).as_dict(),
                "failed": OutboxEventSerializer(outbox.outbox_failed(organization_id=org_id), many=True).data,
            }
        )


class OutboxRetryView(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_ORGANIZATION}

    @extend_schema(
        request=None,
        responses={202: OutboxEventSerializer},
        summary="Retry the failed receivers of an event",
        tags=["platform"],
    )
    def post(self, request, org_slug, event_id: int):
        try:
            row = outbox.outbox_event_retry(
                event_id=event_id, actor=request.user, organization_id=request.organization.pk, request=request
            )
        except OutboxEvent.DoesNotExist as exc:
            raise Http404 from exc
        except outbox.OutboxError as exc:
            raise exceptions.ValidationError({"event": [str(exc)]}) from exc
        return Response(OutboxEventSerializer(row).data, status=status.HTTP_202_ACCEPTED)
