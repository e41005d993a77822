from django.urls import path

from . import api

urlpatterns = [
    path("sso/", api.SsoConfigView.as_view(), name="api_sso"),
    path("sso/providers/<uuid:public_id>/test/", api.ProviderTestView.as_view(), name="api_sso_provider_test"),
    path("sso/domains/", api.DomainListView.as_view(), name="api_sso_domains"),
    path("sso/domains/<int:pk>/", api.DomainDetailView.as_view(), name="api_sso_domain"),
    path("sso/domains/<int:pk>/verify/", api.DomainVerifyView.as_view(), name="api_sso_domain_verify"),
    path("members/<int:pk>/two-factor/", api.MemberTwoFactorView.as_view(), name="api_member_two_factor"),
]
