from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        from thalian.apps import periodic_tasks_add
        from thalian.home import home_section_register

        from . import receivers
        from .beat import SCHEDULE
        from .home import campaigns_home_section, reviews_home_section

        home_section_register(reviews_home_section)
        home_section_register(campaigns_home_section)

        receivers.register()
        periodic_tasks_add(SCHEDULE)
