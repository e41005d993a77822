from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "access_requests"
    verbose_name = "Access requests"

    def ready(self) -> None:
        from thalian.apps import periodic_tasks_add

        from . import receivers
        from .beat import SCHEDULE

        receivers.register()
        periodic_tasks_add(SCHEDULE)
