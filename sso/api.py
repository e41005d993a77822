"""Single sign-on API: GET/PUT …/sso/, provider connection tests, verified domains, two-factor reset."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.models import Membership
from thalian.permissions import Perm

from . import mfa, oidc, saml, selectors, services
from .forms import JIT_ROLE_CHOICES
from .models import IdentityProvider, Protocol, VerifiedDomain


def _api_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"non_field_errors": exc.messages})


class ProviderSerializer(serializers.Serializer):
    id = serializers.UUIDField(required=False, help_text="Omit to create a provider; give it to change one.")
    name = serializers.CharField(max_length=100)
    protocol = serializers.ChoiceField(choices=Protocol.choices)
    enabled = serializers.BooleanField(default=True)
    issuer = serializers.URLField(max_length=500, required=False, allow_blank=True, help_text="OIDC issuer or discovery URL")
    client_id = serializers.CharField(max_length=300, required=False, allow_blank=True)
    client_secret = serializers.CharField(
        required=False, allow_blank=True, write_only=True, help_text="Write-only, stored encrypted; omit to keep."
    )
    has_client_secret = serializers.SerializerMethodField()
    scopes = serializers.CharField(max_length=300, required=False, default="openid email profile")
    metadata_url = serializers.URLField(max_length=500, required=False, allow_blank=True, help_text="SAML IdP metadata URL")
    metadata_xml = serializers.CharField(required=False, allow_blank=True, help_text="SAML IdP metadata XML")
    idp_entity_id = serializers.CharField(read_only=True)
    groups_claim = serializers.CharField(max_length=200, required=False, allow_blank=True)
    role_mapping = serializers.DictField(
        child=serializers.ChoiceField(choices=JIT_ROLE_CHOICES), required=False, help_text="group name -> role"
    )

    def get_has_client_secret(self, obj) -> bool:
        return bool(getattr(obj, "client_secret", ""))

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["id"] = str(instance.public_id)
        return data


class DomainSerializer(serializers.ModelSerializer):
    verified = serializers.BooleanField(source="is_verified", read_only=True)
    txt_record_name = serializers.CharField(source="record_name", read_only=True)
    txt_record_value = serializers.CharField(source="record_value", read_only=True)

    class Meta:
        model = VerifiedDomain
        fields = ["id", "domain", "verified", "verified_at", "txt_record_name", "txt_record_value", "created_at"]
        read_only_fields = ["id", "verified_at", "created_at"]


class ServiceProviderSerializer(serializers.Serializer):
    saml_entity_id = serializers.CharField()
    saml_acs_url = serializers.CharField()
    saml_metadata_url = serializers.CharField()
    oidc_redirect_uri = serializers.CharField()


class SsoConfigSerializer(serializers.Serializer):
    enforce_sso = serializers.BooleanField()
    jit_enabled = serializers.BooleanField()
    jit_default_role = serializers.ChoiceField(choices=JIT_ROLE_CHOICES)
    break_glass_emails = serializers.ListField(child=serializers.EmailField(), max_length=50)
    require_mfa_for_admins = serializers.BooleanField()
    providers = ProviderSerializer(many=True)
    domains = DomainSerializer(many=True, read_only=True)
    service_provider = ServiceProviderSerializer(read_only=True)


class TestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    messages = serializers.ListField(child=serializers.CharField())


def _config(request) -> dict:
    organization = request.organization
    current = selectors.sso_settings_for(organization)
    return SsoConfigSerializer(
        {
            **{f: getattr(current, f) for f in services.SETTINGS_FIELDS},
            "providers": selectors.providers_for_organization(),
            "domains": selectors.domains_for_organization(),
            "service_provider": {
                "saml_entity_id": saml.entity_id(organization),
                "saml_acs_url": saml.acs_url(organization),
                "saml_metadata_url": saml.entity_id(organization),
                "oidc_redirect_uri": oidc.callback_url(),
            },
        }
    ).data


class SsoConfigView(OrgAPIView):
    """Single sign-on of the organization: settings, identity providers, verified domains and the addresses
    to register at identity providers. Super admins only."""

    required_perms = {"GET": Perm.MANAGE_ORGANIZATION, "PUT": Perm.MANAGE_ORGANIZATION}

    @extend_schema(responses=SsoConfigSerializer, summary="Single sign-on configuration", tags=["sso"])
    def get(self, request, org_slug):
        return Response(_config(request))

    @extend_schema(
        request=SsoConfigSerializer, responses=SsoConfigSerializer, tags=["sso"],
        summary="Replace the single sign-on configuration (providers not listed are deleted)",
    )
    def put(self, request, org_slug):
        ser = SsoConfigSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = dict(ser.validated_data)
        providers = [dict(p) for p in data.pop("providers")]
        try:
            services.sso_configuration_replace(
                actor=request.membership, settings=data, providers=providers, request=request
            )
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(_config(request))


class ProviderTestView(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_ORGANIZATION}

    @extend_schema(request=None, responses=TestResultSerializer, tags=["sso"],
                   summary="Test connection: fetch the provider's discovery document or metadata")
    def post(self, request, org_slug, public_id):
        provider = get_object_or_404(IdentityProvider.objects.all(), public_id=public_id)
        ok, lines = services.provider_test(provider=provider)
        return Response({"ok": ok, "messages": lines})


class DomainListView(OrgAPIView):
    required_perms = {"GET": Perm.MANAGE_ORGANIZATION, "POST": Perm.MANAGE_ORGANIZATION}
    pagination_class = None

    @extend_schema(responses=DomainSerializer(many=True), tags=["sso"], summary="Claimed and verified domains")
    def get(self, request, org_slug):
        return Response(DomainSerializer(selectors.domains_for_organization(), many=True).data)

    @extend_schema(request=DomainSerializer, responses={201: DomainSerializer}, tags=["sso"],
                   summary="Claim a domain (then publish the TXT record and verify)")
    def post(self, request, org_slug):
        ser = DomainSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            claim = services.domain_claim(actor=request.membership, domain=ser.validated_data["domain"], request=request)
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(DomainSerializer(claim).data, status=status.HTTP_201_CREATED)


def _domain(pk: int) -> VerifiedDomain:
    return get_object_or_404(VerifiedDomain.objects.all(), pk=pk)


class DomainVerifyView(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_ORGANIZATION}

    @extend_schema(request=None, responses=DomainSerializer, tags=["sso"], summary="Verify a domain by its DNS TXT record")
    def post(self, request, org_slug, pk):
        try:
            domain = services.domain_verify(actor=request.membership, domain=_domain(pk), request=request)
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(DomainSerializer(domain).data)


class DomainDetailView(OrgAPIView):
    required_perms = {"DELETE": Perm.MANAGE_ORGANIZATION}

    @extend_schema(responses={204: None}, tags=["sso"], summary="Remove a claimed or verified domain")
    def delete(self, request, org_slug, pk):
        try:
            services.domain_delete(actor=request.membership, domain=_domain(pk), request=request)
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberTwoFactorView(OrgAPIView):
    required_perms = {"DELETE": Perm.MANAGE_ORGANIZATION}

    @extend_schema(responses={204: None}, tags=["sso"],
                   summary="Reset a member's two-factor sign-in (they enrol again at their next password sign-in)")
    def delete(self, request, org_slug, pk):
        member = get_object_or_404(
            Membership.objects.select_related("user", "organization"), pk=pk, organization=request.organization
        )
        try:
            mfa.mfa_reset(actor=request.membership, membership=member, request=request)
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
