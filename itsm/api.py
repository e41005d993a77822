"""/api/v1/orgs/<slug>/itsm-connections/ and ticket retry. Credentials are accepted, never returned."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.permissions import Perm

from . import selectors, services
from .models import ItsmConnection, Ticket


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


CONNECTION_SCHEMA = inline_serializer(
    "ItsmConnection",
    {
        "id": serializers.UUIDField(),
        "kind": serializers.ChoiceField(choices=["jira", "servicenow", "freshservice", "zendesk"]),
        "name": serializers.CharField(),
        "base_url": serializers.URLField(),
        "is_default": serializers.BooleanField(),
        "credentials_set": serializers.ListField(child=serializers.CharField()),
        "application_ids": serializers.ListField(child=serializers.IntegerField()),
    },
)


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

    @extend_schema(request=CONNECTION_SCHEMA, responses={201: CONNECTION_SCHEMA})
    def post(self, request, org_slug):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        try:
            connection = services.itsm_connection_create(
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

    @extend_schema(request=CONNECTION_SCHEMA, responses=CONNECTION_SCHEMA)
    def patch(self, request, org_slug, public_id):
        connection = _connection(public_id)
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        try:
            services.itsm_connection_update(
                connection=connection, actor=request.user, data=dict(request.data), request=request
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(connection_json(_connection(public_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, org_slug, public_id):
        services.itsm_connection_delete(
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
        ok, message = services.itsm_connection_test(
            connection=_connection(public_id), actor=request.user, request=request
        )
        return Response({"ok": ok, "message": message})


class TicketRetryApi(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_CAMPAIGNS}
    requires_plan = True

    @extend_schema(
        request=None,
        responses=inline_serializer("ItsmTicketRetry", {"ticket_status": serializers.CharField()}),
    )
    def post(self, request, org_slug, item_id: int):
        ticket = Ticket.objects.select_related("item").filter(item_id=item_id).first()
        if ticket is None:
            raise Http404
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
