from django.urls import path

from . import views

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/two-factor/", views.mfa_setup, name="mfa_setup"),
    path("accounts/two-factor/verify/", views.mfa_challenge, name="mfa_challenge"),
    path("sso/oidc/callback/", views.oidc_callback, name="sso_oidc_callback"),
    path("sso/oidc/<uuid:public_id>/start/", views.oidc_start, name="sso_oidc_start"),
    path("sso/saml/<slug:org_slug>/metadata/", views.saml_metadata, name="sso_saml_metadata"),
    path("sso/saml/<slug:org_slug>/acs/", views.saml_acs, name="sso_saml_acs"),
    path("sso/saml/<slug:org_slug>/<uuid:public_id>/start/", views.saml_start, name="sso_saml_start"),
]
