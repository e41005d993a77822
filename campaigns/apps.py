from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        from thalian.home import home_section_register

        from .home import campaigns_home_section, reviews_home_section

        home_section_register(reviews_home_section)
        home_section_register(campaigns_home_section)
