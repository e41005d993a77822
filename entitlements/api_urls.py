from django.urls import path

from . import api

urlpatterns = [
    path("imports/", api.ImportListCreateAPI.as_view(), name="api_import_list"),
    path("imports/<int:pk>/", api.ImportDetailAPI.as_view(), name="api_import_detail"),
    path("imports/<int:pk>/cancel/", api.ImportCancelAPI.as_view(), name="api_import_cancel"),
    path("imports/<int:pk>/retry/", api.ImportRetryAPI.as_view(), name="api_import_retry"),
    path("identities/", api.IdentityListAPI.as_view(), name="api_identity_list"),
    path("identities/<int:pk>/", api.IdentityDetailAPI.as_view(), name="api_identity_detail"),
    path("applications/", api.ApplicationListAPI.as_view(), name="api_application_list"),
    path("applications/<int:pk>/scim-connector/", api.ScimConnectorAPI.as_view(), name="api_scim_connector"),
    path("applications/<int:pk>/scim-connector/sync/", api.ScimSyncNowAPI.as_view(), name="api_scim_sync_now"),
    path("applications/<int:pk>/sync-runs/", api.ApplicationSyncRunsAPI.as_view(), name="api_application_sync_runs"),
    path("entitlements/", api.EntitlementListAPI.as_view(), name="api_entitlement_list"),
]
