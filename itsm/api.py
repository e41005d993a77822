"""/api/v1/orgs/<slug>/itsm-connections/ and ticket retry. Credentials are accepted, never returned."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from access_requests.selectors import requests_waiting_for_ticket
from campaigns.models import Campaign, RemediationStatus, TicketStatus
from thalian.api import OrgAPIView
from thalian.permissions import Perm

from . import comments, itsm_connections, request_tickets, selectors, services
from .models import CommentState, ConnectionKind, ItsmConnection, RequestTicket, Ticket, TicketState


def connection_json(connection: ItsmConnection, route_ids: list[int] | None = None) -> dict:
    spec = connection.spec
    data = {
        "id": str(connection.public_id),
        "kind": connection.kind,
        "name": connection.name,
        "base_url": connection.base_url,
        "is_default": connection.is_default,
    }
    for name in spec.identity_fields + spec.setting_fields:
        data[name] = connection.config.get(name)
    data["credentials_set"] = connection.secret_fields_set()
    data["application_ids"] = (
        route_ids if route_ids is not None else [r.application_id for r in connection.routes.all()]
    )
    data["last_tested_at"] = connection.last_tested_at
    data["last_test_ok"] = connection.last_test_ok
    data["last_test_message"] = connection.last_test_message
    data["created_at"] = connection.created_at
    return data


def _drf_error(exc: DjangoValidationError) -> ValidationError:
    if hasattr(exc, "error_dict"):
        return ValidationError({k: v for k, v in exc.message_dict.items()})
    return ValidationError({"non_field_errors": exc.messages})


class _ConnectionOut(serializers.Serializer):
    """Fields every connection returns; credentials are write-only and never part of a response."""

    id = serializers.UUIDField(read_only=True)
    kind = serializers.ChoiceField(choices=ConnectionKind.choices, read_only=True)
    name = serializers.CharField(read_only=True)
    base_url = serializers.URLField(read_only=True)
    is_default = serializers.BooleanField(read_only=True)
    credentials_set = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Names of the stored credential fields; their values are never returned.",
    )
    application_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    last_tested_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_test_ok = serializers.BooleanField(read_only=True, allow_null=True)
    last_test_message = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class ItsmConnectionJiraSerializer(_ConnectionOut):
    """A Jira connection."""

    email = serializers.EmailField(read_only=True)
    project_key = serializers.CharField(read_only=True)
    issue_type = serializers.CharField(read_only=True)


class ItsmConnectionServiceNowSerializer(_ConnectionOut):
    """A ServiceNow connection."""

    username = serializers.CharField(read_only=True)
    table = serializers.CharField(read_only=True)
    assignment_group = serializers.CharField(read_only=True, allow_blank=True)


class ItsmConnectionFreshserviceSerializer(_ConnectionOut):
    """A Freshservice connection."""

    group_id = serializers.IntegerField(read_only=True, allow_null=True)
    priority = serializers.IntegerField(read_only=True, allow_null=True, help_text="1 low to 4 urgent.")


class ItsmConnectionZendeskSerializer(_ConnectionOut):
    """A Zendesk connection."""

    email = serializers.EmailField(read_only=True)
    group_id = serializers.IntegerField(read_only=True, allow_null=True)
    priority = serializers.CharField(
        read_only=True, allow_blank=True, help_text="low, normal, high or urgent."
    )
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)


CONNECTION_SCHEMA = PolymorphicProxySerializer(
    component_name="ItsmConnection",
    serializers={
        ConnectionKind.JIRA.value: ItsmConnectionJiraSerializer,
        ConnectionKind.SERVICENOW.value: ItsmConnectionServiceNowSerializer,
        ConnectionKind.FRESHSERVICE.value: ItsmConnectionFreshserviceSerializer,
        ConnectionKind.ZENDESK.value: ItsmConnectionZendeskSerializer,
    },
    resource_type_field_name="kind",
)


@extend_schema_field(
    {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": True},
)
class _PriorityField(serializers.Field):
    """Freshservice takes a number 1-4, Zendesk one of low, normal, high, urgent."""


class ItsmConnectionInputSerializer(serializers.Serializer):
    """Flat input: each kind reads the fields it needs; credentials are accepted here and never returned."""

    kind = serializers.ChoiceField(choices=ConnectionKind.choices, help_text="Cannot change after creation.")
    name = serializers.CharField(max_length=100)
    base_url = serializers.URLField()
    is_default = serializers.BooleanField(required=False)
    application_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    email = serializers.EmailField(required=False, help_text="Jira and Zendesk.")
    username = serializers.CharField(required=False, help_text="ServiceNow.")
    api_token = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        help_text="Jira and Zendesk; empty keeps the stored one.",
    )
    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, help_text="ServiceNow; empty keeps the stored one."
    )
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        help_text="Freshservice; empty keeps the stored one.",
    )
    project_key = serializers.CharField(required=False, help_text="Jira.")
    issue_type = serializers.CharField(required=False, allow_blank=True, help_text="Jira; Task when empty.")
    table = serializers.CharField(
        required=False, allow_blank=True, help_text="ServiceNow; incident when empty."
    )
    assignment_group = serializers.CharField(required=False, allow_blank=True, help_text="ServiceNow.")
    group_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="Freshservice and Zendesk."
    )
    priority = _PriorityField(required=False, allow_null=True, help_text="Freshservice and Zendesk.")
    tags = serializers.ListField(child=serializers.CharField(), required=False, help_text="Zendesk.")


def _connection(public_id) -> ItsmConnection:
    connection = ItsmConnection.objects.prefetch_related("routes").filter(public_id=public_id).first()
    if connection is None:
        raise Http404
    return connection


class ConnectionListApi(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_SETTINGS, "POST": Perm.MANAGE_SETTINGS}

    @extend_schema(
        operation_id="orgs_itsm_connections_list",
        responses=inline_serializer(
            "ItsmConnectionList", {"results": serializers.ListField(child=CONNECTION_SCHEMA)}
        ),
    )
    def get(self, request, org_slug):
        return Response({"results": [connection_json(c) for c in selectors.connections_list()]})

    @extend_schema(request=ItsmConnectionInputSerializer, responses={201: CONNECTION_SCHEMA})
    def post(self, request, org_slug):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        try:
            connection = itsm_connections.itsm_connection_create(
                organization=request.organization,
                actor=request.user,
                data=dict(request.data),
                request=request,
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(connection_json(_connection(connection.public_id)), status=status.HTTP_201_CREATED)


class ConnectionDetailApi(OrgAPIView):
    required_perms = {
        "GET": Perm.MANAGE_SETTINGS,
        "PATCH": Perm.MANAGE_SETTINGS,
        "DELETE": Perm.MANAGE_SETTINGS,
    }

    @extend_schema(responses=CONNECTION_SCHEMA)
    def get(self, request, org_slug, public_id):
        return Response(connection_json(_connection(public_id)))

    @extend_schema(request=ItsmConnectionInputSerializer, responses=CONNECTION_SCHEMA)
    def patch(self, request, org_slug, public_id):
        connection = _connection(public_id)
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        try:
            itsm_connections.itsm_connection_update(
                connection=connection, actor=request.user, data=dict(request.data), request=request
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(connection_json(_connection(public_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, org_slug, public_id):
        itsm_connections.itsm_connection_delete(
            connection=_connection(public_id), actor=request.user, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConnectionTestApi(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_SETTINGS}

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "ItsmConnectionTest", {"ok": serializers.BooleanField(), "message": serializers.CharField()}
        ),
    )
    def post(self, request, org_slug, public_id):
        ok, message = itsm_connections.itsm_connection_test(
            connection=_connection(public_id), actor=request.user, request=request
        )
        return Response({"ok": ok, "message": message})


def _ticket_of_item(item_id: int) -> Ticket:
    ticket = Ticket.objects.select_related("item").filter(item_id=item_id).first()
    if ticket is None:
        raise Http404
    return ticket


class TicketRetryApi(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "ItsmTicketRetry",
                {
                    "item": serializers.IntegerField(help_text="The review item the ticket belongs to."),
                    "ticket_status": serializers.ChoiceField(choices=TicketStatus.choices, allow_blank=True),
                    "ticket_error": serializers.CharField(allow_blank=True),
                },
            )
        },
    )
    def post(self, request, org_slug, item_id: int):
        ticket = _ticket_of_item(item_id)
        try:
            ticket = services.ticket_retry(ticket=ticket, actor=request.user, request=request)
        except DjangoValidationError as exc:
            raise ValidationError({"non_field_errors": exc.messages}) from exc
        ticket.item.refresh_from_db()
        return Response(
            {
                "item": ticket.item_id,
                "ticket_status": ticket.item.ticket_status,
                "ticket_error": ticket.item.ticket_error,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class TicketCommentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    body = serializers.CharField()
    state = serializers.ChoiceField(choices=CommentState.choices)
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    reference = serializers.CharField(help_text="Carried in the comment's text; a retry looks for it on the ticket.")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)


class TicketCommentsApi(OrgAPIView):
    """The notes Thalian adds to a review item's ticket (a withdrawn or reinstated revoke), oldest first, with
    their delivery state: pending, sending, sent or failed (not delivered after the last attempt)."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}
    requires_plan = True

    @extend_schema(responses=TicketCommentSerializer(many=True), operation_id="itsm_ticket_comments")
    def get(self, request, org_slug, item_id: int):
        comments = selectors.ticket_comments(ticket=_ticket_of_item(item_id))
        return Response(TicketCommentSerializer(comments, many=True).data)


class TicketCommentsRetryApi(OrgAPIView):
    """POST: send the ticket's failed comments again; each is looked for on the ticket before it is posted."""

    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    @extend_schema(
        request=None,
        responses={202: inline_serializer("ItsmTicketCommentsRetry", {"retried": serializers.IntegerField()})},
        operation_id="itsm_ticket_comments_retry",
    )
    def post(self, request, org_slug, item_id: int):
        try:
            count = comments.ticket_comments_retry(ticket=_ticket_of_item(item_id), actor=request.user, request=request)
        except DjangoValidationError as exc:
            raise ValidationError({"non_field_errors": exc.messages}) from exc
        return Response({"retried": count}, status=status.HTTP_202_ACCEPTED)


class CampaignOpenTicketsApi(OrgAPIView):
    """Open tickets now: one ticket for every revoke of an active or completed campaign that has none although a
    connection now applies to its application (revokes recorded before any connection existed). Idempotent:
    each revoke has exactly one ticket, so repeating the call opens nothing more."""

    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "CampaignTicketsOpened",
                {"opened": serializers.IntegerField(help_text="Tickets opened by this call.")},
            )
        },
        operation_id="campaign_tickets_open",
    )
    def post(self, request, org_slug, campaign_id):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise Http404
        try:
            opened = services.tickets_open_unticketed(
                organization=request.organization, campaign=campaign, actor=request.user, request=request
            )
        except DjangoValidationError as exc:
            raise ValidationError({"non_field_errors": exc.messages}) from exc
        return Response({"opened": opened})


# Remediation queue: revoked access and whether its removal is proven, as on the Remediation page ----------


class _RemediationCampaign(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    due_date = serializers.DateField()


class RemediationItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = _RemediationCampaign()
    identity_email = serializers.CharField()
    identity_name = serializers.CharField()
    application_name = serializers.CharField()
    role = serializers.CharField()
    decision_reason = serializers.CharField()
    decided_by_email = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    ticket_key = serializers.CharField()
    ticket_url = serializers.CharField()
    ticket_status = serializers.ChoiceField(choices=TicketStatus.choices, allow_blank=True)
    ticket_error = serializers.CharField()
    ticket_comment_failed = serializers.BooleanField(
        help_text="A note to the ticket (e.g. the revoke was withdrawn) could not be added after its last attempt."
    )
    remediation_status = serializers.ChoiceField(choices=RemediationStatus.choices, allow_blank=True)
    remediation_checked_at = serializers.DateTimeField(allow_null=True)


class RemediationCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    action_required = serializers.IntegerField()
    ticket_failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    verified_removed = serializers.IntegerField()


class RemediationQueuePageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Items matching the filter")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    counts = RemediationCountsSerializer(help_text="Counts per state over the whole queue (unfiltered)")
    results = RemediationItemSerializer(many=True)


class RemediationPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class RemediationQueueApi(OrgAPIView):
    """Revoked items with their ticket and removal state, most urgent first: action required, failed tickets,
    pending removal, verified. Staff see every application; other members the applications whose remediation
    they own."""

    required_perms = {"GET": Perm.VIEW_REMEDIATION}

    @extend_schema(
        operation_id="remediation_queue",
        parameters=[
            OpenApiParameter("state", str, enum=sorted(selectors.REMEDIATION_FILTERS), description="Only this state"),
            OpenApiParameter("page", int, description="Page number (50 items a page)"),
            OpenApiParameter("page_size", int, description="Items per page (max 200)"),
        ],
        responses=RemediationQueuePageSerializer,
    )
    def get(self, request, org_slug):
        state = request.query_params.get("state", "")
        if state and state not in selectors.REMEDIATION_FILTERS:
            raise ValidationError({"state": [f"choose one of {', '.join(sorted(selectors.REMEDIATION_FILTERS))}"]})
        base = selectors.remediation_queue(membership=request.membership)
        items = selectors.remediation_queue(membership=request.membership, state=state)
        paginator = RemediationPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        return Response(
            {
                "count": paginator.page.paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "counts": selectors.remediation_counts(base.order_by()),
                "results": RemediationItemSerializer(page, many=True).data,
            }
        )


# Access request tickets ------------------------------------------------------------------------------------


class RequestTicketAnswerSerializer(serializers.Serializer):
    request = serializers.UUIDField(help_text="The access request.")
    ticket_state = serializers.CharField(allow_blank=True, help_text="waiting (no connection), pending, open, "
                                                                     "in_progress, resolved or failed.")
    ticket_key = serializers.CharField(allow_blank=True)
    ticket_error = serializers.CharField(allow_blank=True)


def _request_ticket_answer(req) -> Response:
    req.refresh_from_db()
    return Response({"request": str(req.pk), "ticket_state": req.ticket_state, "ticket_key": req.ticket_key,
                     "ticket_error": req.ticket_error}, status=202)


class AccessRequestTicketApi(OrgAPIView):
    """`open`: the ticket of a request waiting in the remediation queue, once a connection applies (the
    application's owner or staff); `retry`: a failed one (staff)."""

    required_perms = {"POST": Perm.VIEW_REMEDIATION}

    @extend_schema(request=None, responses={202: RequestTicketAnswerSerializer},
                   summary="Open or retry an access request's ticket", tags=["access requests"])
    def post(self, request, org_slug, request_id, action: str):
        if action == "open":
            req = requests_waiting_for_ticket(member=request.membership).filter(pk=request_id).first()
            if req is None:
                raise Http404
            try:
                request_tickets.request_tickets_open_waiting(organization=request.organization, actor=request.user,
                                                             request_ids=[req.pk], request=request)
            except DjangoValidationError as exc:
                raise ValidationError({"non_field_errors": exc.messages}) from exc
            return _request_ticket_answer(req)
        if action != "retry":
            raise Http404
        if not request.membership.can(Perm.MANAGE_CAMPAIGNS):
            raise PermissionDenied(f"Your role ({request.membership.role}) does not allow retrying tickets.")
        ticket = (RequestTicket.objects.select_related("access_request")
                  .filter(access_request_id=request_id, state=TicketState.FAILED).first())
        if ticket is None:
            raise Http404
        try:
            request_tickets.request_ticket_retry(ticket=ticket, actor=request.user, request=request)
        except DjangoValidationError as exc:
            raise ValidationError({"non_field_errors": exc.messages}) from exc
        return _request_ticket_answer(ticket.access_request)
