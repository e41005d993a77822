from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.utils.module_loading import import_string
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import metrics, views

# Page URLs of each app live in <app>/urls.py (under /o/<org_slug>/) and API URLs in <app>/api_urls.py (under
# /api/v1/orgs/<org_slug>/). The root URLconf is the project's wiring: it names every installed app's URLconf
# by its dotted path, and a URLconf that fails to import fails start-up rather than hiding its pages.
PAGE_URLCONFS = (
    "thalian.org_urls",
    "entitlements.urls",
    "campaigns.urls",
    "access_requests.urls",
    "itsm.urls",
    "notifications.urls",
    "evidence.urls",
    "sso.urls",
)
API_URLCONFS = (
    "thalian.api_urls",
    "entitlements.api_urls",
    "campaigns.api_urls",
    "access_requests.api_urls",
    "itsm.api_urls",
    "notifications.api_urls",
    "evidence.api_urls",
    "sso.api_urls",
)
org_pages = [path("", views.dashboard, name="org_dashboard")]
org_pages += [path("", include(module)) for module in PAGE_URLCONFS]
org_api = [path("", include(module)) for module in API_URLCONFS]
# Endpoints outside an organization (evidence verification, say), declared as `global_urlpatterns`.
GLOBAL_API_URLPATTERNS = ("evidence.api_urls.global_urlpatterns",)
extra_api = [pattern for name in GLOBAL_API_URLPATTERNS for pattern in import_string(name)]
urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
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
    path("guest/access-requests/", include("access_requests.guest_urls")),
    path("guest/", include("campaigns.guest_urls")),
    path("o/<slug:org_slug>/", include(org_pages)),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # GET only: an OPTIONS answer would go through the page's HTML template renderer, which has no template for it.
    path(
        "api/v1/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    path("api/v1/orgs/<slug:org_slug>/", include(org_api)),
    path("api/v1/", include(extra_api)),
]
