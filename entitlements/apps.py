from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "entitlements"

    def ready(self) -> None:
        from thalian.home import home_section_register

        from .home import inventory_home_section

        home_section_register(inventory_home_section)
