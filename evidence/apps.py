from django.apps import AppConfig


class EvidenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evidence"
    verbose_name = "Audit evidence"

    def ready(self) -> None:
        from thalian.home import home_section_register

        from .home import evidence_home_section

        home_section_register(evidence_home_section)
