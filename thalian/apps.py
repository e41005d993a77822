from django.apps import AppConfig


def periodic_tasks_add(schedule: dict) -> None:
    """Each app adds its periodic tasks (its beat.py SCHEDULE) from its AppConfig.ready(); Celery beat reads
    the merged CELERY_BEAT_SCHEDULE once Django is set up."""
    from django.conf import settings

    for name, entry in schedule.items():
        if settings.CELERY_BEAT_SCHEDULE.get(name, entry) != entry:
            raise RuntimeError(f"two periodic tasks are named {name!r}")
        settings.CELERY_BEAT_SCHEDULE[name] = entry


class ThalianConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "thalian"
    verbose_name = "Thalian platform"

    def ready(self) -> None:
        from . import metrics, signals  # noqa: F401 - connect the audit and Celery-outcome signal handlers
        from .beat import SCHEDULE

        periodic_tasks_add(SCHEDULE)
