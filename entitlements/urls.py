from django.urls import path

from . import views

urlpatterns = [
    path("inventory/applications/", views.application_list, name="application_list"),
    path("inventory/applications/<int:pk>/", views.application_detail, name="application_detail"),
    path("inventory/applications/<int:pk>/scim/", views.scim_connector_save, name="scim_connector_save"),
    path("inventory/applications/<int:pk>/scim/delete/", views.scim_connector_delete, name="scim_connector_delete"),
    path("inventory/applications/<int:pk>/scim/sync/", views.scim_sync_now, name="scim_sync_now"),
    path("inventory/identities/", views.identity_list, name="identity_list"),
    path("inventory/identities/<int:pk>/", views.identity_detail, name="identity_detail"),
    path("inventory/entitlements/", views.entitlement_list, name="entitlement_list"),
    path("inventory/imports/", views.import_list, name="import_list"),
    path("inventory/imports/<int:pk>/", views.import_detail, name="import_detail"),
    path("inventory/imports/<int:pk>/cancel/", views.import_cancel, name="import_cancel"),
    path("inventory/imports/<int:pk>/retry/", views.import_retry, name="import_retry"),
]
