from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "entitlements"

    def ready(self) -> None:
        from thalian.apps import periodic_tasks_add
        from thalian.home import home_section_register

        from . import receivers
        from .beat import SCHEDULE
        from .home import inventory_home_section

        home_section_register(inventory_home_section)

        receivers.register()
        periodic_tasks_add(SCHEDULE)
