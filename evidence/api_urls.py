from django.urls import path

from . import access_request_views, views

urlpatterns = [
    path("evidence/access-requests-report/", access_request_views.AccessRequestsReportAPI.as_view(),
         name="api_access_requests_report"),
    path("access-requests/<uuid:request_id>/trail.csv", access_request_views.AccessRequestTrailCsvAPI.as_view(),
         name="api_access_request_trail_csv"),
    path(
        "campaigns/<uuid:campaign_id>/export.csv",
        views.CampaignExportCsvAPI.as_view(),
        name="api_campaign_export_csv",
    ),
    path(
        "campaigns/<uuid:campaign_id>/export.zip",
        views.CampaignExportZipAPI.as_view(),
        name="api_campaign_export_zip",
    ),
    path("campaigns/<uuid:campaign_id>/report/", views.CampaignReportAPI.as_view(), name="api_campaign_report"),
    path("campaigns/<uuid:campaign_id>/sample/", views.CampaignSampleAPI.as_view(), name="api_campaign_sample"),
    path("evidence/packages/", views.EvidencePackageListAPI.as_view(), name="api_evidence_package_list"),
    path(
        "evidence/packages/<uuid:package_id>/",
        views.EvidencePackageDetailAPI.as_view(),
        name="api_evidence_package_detail",
    ),
    path(
        "evidence/packages/<uuid:package_id>/cancel/",
        views.EvidencePackageCancelAPI.as_view(),
        name="api_evidence_package_cancel",
    ),
    path(
        "evidence/packages/<uuid:package_id>/retry/",
        views.EvidencePackageRetryAPI.as_view(),
        name="api_evidence_package_retry",
    ),
    path(
        "evidence/packages/<uuid:package_id>/download",
        views.EvidencePackageDownloadAPI.as_view(),
        name="api_evidence_package_download",
    ),
]

# Not organization-scoped: mounted under /api/v1/.
global_urlpatterns = [
    path("evidence/public-key", views.EvidencePublicKeyAPI.as_view(), name="api_evidence_public_key"),
]
