from django.urls import path

from . import access_request_views, views

urlpatterns = [
    path("evidence/", views.evidence_list, name="evidence_list"),
    path("evidence/access-requests/", access_request_views.access_requests_report, name="access_requests_report"),
    path("access-requests/<uuid:request_id>/trail.csv", access_request_views.access_request_trail_csv,
         name="access_request_trail_csv"),
    path(
        "evidence/packages/<uuid:package_id>/download",
        views.evidence_package_download,
        name="evidence_package_download",
    ),
    path(
        "evidence/packages/<uuid:package_id>/cancel",
        views.evidence_package_cancel_view,
        name="evidence_package_cancel",
    ),
    path(
        "evidence/packages/<uuid:package_id>/retry",
        views.evidence_package_retry_view,
        name="evidence_package_retry",
    ),
    path(
        "campaigns/<uuid:campaign_id>/export.csv", views.evidence_campaign_csv, name="evidence_campaign_csv"
    ),
    path(
        "campaigns/<uuid:campaign_id>/export.zip", views.evidence_campaign_zip, name="evidence_campaign_zip"
    ),
    path(
        "campaigns/<uuid:campaign_id>/report/",
        views.evidence_campaign_report,
        name="evidence_campaign_report",
    ),
    path(
        "campaigns/<uuid:campaign_id>/sample/",
        views.evidence_campaign_sample,
        name="evidence_campaign_sample",
    ),
]
