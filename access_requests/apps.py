from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "access_requests"
    verbose_name = "Access requests"

    def ready(self) -> None:
        from thalian.apps import periodic_tasks_add
        from thalian.home import home_section_register

        from . import receivers
        from .beat import SCHEDULE
        from .home import access_requests_home_section

        home_section_register(access_requests_home_section)
        receivers.register()
        periodic_tasks_add(SCHEDULE)
