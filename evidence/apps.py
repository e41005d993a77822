from django.apps import AppConfig


class EvidenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evidence"
    verbose_name = "Audit evidence"

    def ready(self) -> None:
        from thalian.apps import periodic_tasks_add
        from thalian.home import home_section_register

        from .beat import SCHEDULE
        from .home import evidence_home_section

        home_section_register(evidence_home_section)
        periodic_tasks_add(SCHEDULE)
