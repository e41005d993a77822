from django.apps import AppConfig


class ThalianConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "thalian"
    verbose_name = "Thalian platform"

    def ready(self) -> None:
        from . import signals  # noqa: F401
