from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import views

# Page URLs of each app live in <app>/urls.py (under /o/<org_slug>/) and API URLs in <app>/api_urls.py (under
# /api/v1/orgs/<org_slug>/); both are included here when the module exists.
org_pages = [path("", views.dashboard, name="org_dashboard")]
org_api = []
extra_api = []
for _app in ("thalian", "entitlements", "campaigns", "itsm", "notifications", "evidence", "sso"):
    try:
        _pages = __import__(f"{_app}.org_urls" if _app == "thalian" else f"{_app}.urls", fromlist=["urlpatterns"])
        org_pages.append(path("", include(_pages.urlpatterns)))
    except ModuleNotFoundError as exc:
        if not exc.name.startswith(_app):
            raise
    try:
        _api = __import__(f"{_app}.api_urls", fromlist=["urlpatterns"])
        org_api.append(path("", include(_api.urlpatterns)))
        extra_api.extend(getattr(_api, "global_urlpatterns", []))
    except ModuleNotFoundError as exc:
        if not exc.name.startswith(_app):
            raise

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True)),
    # Sign-in (e-mail first, routed to the organization's identity provider), SSO callbacks and two-factor steps.
    path("", include("sso.public_urls")),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/change/", views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("guest/", include("campaigns.guest_urls")),
    path("o/<slug:org_slug>/", include(org_pages)),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/orgs/<slug:org_slug>/", include(org_api)),
    path("api/v1/", include(extra_api)),
]
