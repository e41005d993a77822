from django.urls import path

from . import views

urlpatterns = [
    path("settings/sso/", views.sso_settings, name="sso_settings"),
    path("settings/sso/providers/new/<str:protocol>/", views.provider_new, name="sso_provider_new"),
    path("settings/sso/providers/<uuid:public_id>/", views.provider_edit, name="sso_provider_edit"),
    path("settings/sso/providers/<uuid:public_id>/test/", views.provider_test, name="sso_provider_test"),
    path("settings/sso/providers/<uuid:public_id>/delete/", views.provider_delete, name="sso_provider_delete"),
    path("settings/sso/domains/", views.domain_claim, name="sso_domain_claim"),
    path("settings/sso/domains/<int:pk>/verify/", views.domain_verify, name="sso_domain_verify"),
    path("settings/sso/domains/<int:pk>/delete/", views.domain_delete, name="sso_domain_delete"),
    path("settings/sso/members/<int:pk>/reset-two-factor/", views.member_mfa_reset, name="sso_member_mfa_reset"),
]
