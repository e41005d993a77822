"""The guest reviewer portal (outside /o/<slug>/: the personal link is the only credential)."""

from django.urls import path

from . import guest_views

urlpatterns = [
    path("<str:token>/", guest_views.guest_review, name="guest_review"),
    path("<str:token>/items/<int:item_id>/decide/", guest_views.guest_decide, name="guest_decide"),
    path("<str:token>/bulk/", guest_views.guest_bulk_decide, name="guest_bulk_decide"),
    path("<str:token>/sign-off/", guest_views.guest_sign_off, name="guest_sign_off"),
    path("<str:token>/delegate/", guest_views.guest_delegate, name="guest_delegate"),
]
