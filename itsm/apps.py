from django.apps import AppConfig


class ItsmConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "itsm"
