"""The guest approver's page (outside /o/<slug>/: the personal link is the only credential)."""

from django.urls import path

from . import views

urlpatterns = [
    path("<str:token>/", views.guest_decide, name="access_request_guest"),
]
