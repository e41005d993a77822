"""Standing delegation of the caller: GET/POST /me/delegates/, DELETE /me/delegates/<id>/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.permissions import Perm

from .delegation import delegate_final, delegation_create, delegation_delete, delegations_of
from .models import Delegation
from .reassignment import ReassignError


class DelegationSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    delegate = serializers.EmailField(help_text="E-mail of the member who reviews in your place.")
    starts_on = serializers.DateField()
    ends_on = serializers.DateField(required=False, allow_null=True, default=None, help_text="null: open-ended.")
    move_open_items = serializers.BooleanField(
        required=False, default=False, help_text="Also move your open items in active campaigns now."
    )
    final_delegate = serializers.EmailField(read_only=True, help_text="The end of the chain of delegations.")
    moved_items = serializers.IntegerField(read_only=True, required=False)


def _row(d: Delegation, final: str, moved: int | None = None) -> dict:
    data = {"id": d.pk, "delegate": d.delegate.user.email, "starts_on": d.starts_on, "ends_on": d.ends_on,
            "move_open_items": d.move_open_items, "final_delegate": final}
    if moved is not None:
        data["moved_items"] = moved
    return DelegationSerializer(data).data


class MyDelegatesAPI(OrgAPIView):
    required_perms = {"GET": Perm.DECIDE_ASSIGNED, "POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(operation_id="me_delegates_list", responses=DelegationSerializer(many=True))
    def get(self, request, org_slug):
        mine, _ = delegations_of(member=request.membership)
        return Response([_row(r.delegation, r.final_delegate) for r in mine])

    @staticmethod
    def _final(request, d: Delegation) -> str:
        try:
            return delegate_final(member=request.membership, day=d.starts_on).user.email
        except ReassignError:
            return d.delegate.user.email

    @extend_schema(operation_id="me_delegates_create", request=DelegationSerializer,
                   responses={201: DelegationSerializer})
    def post(self, request, org_slug):
        data = DelegationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            row = delegation_create(member=request.membership, delegate=v["delegate"], starts_on=v["starts_on"],
                                    ends_on=v["ends_on"], move_open_items=v["move_open_items"], request=request)
        except ReassignError as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from exc
        return Response(_row(row, self._final(request, row), row.moved_items), status=status.HTTP_201_CREATED)


class MyDelegateDetailAPI(OrgAPIView):
    required_perms = {"DELETE": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(operation_id="me_delegates_delete", responses={204: None})
    def delete(self, request, org_slug, delegation_id):
        delegation_delete(member=request.membership, delegation_id=delegation_id, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
