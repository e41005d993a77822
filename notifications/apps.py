from django.apps import AppConfig


def notification_log_panel(*, request, campaign):
    """The campaign page's list of notifications sent, for roles that see the whole campaign."""
    from thalian.permissions import Perm, has_perm

    from .templatetags.notifications_tags import notification_log

    if has_perm(request.membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        return notification_log(campaign)
    return None


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from campaigns.panels import campaign_panel_register
        from thalian.apps import periodic_tasks_add

        from . import receivers
        from .beat import SCHEDULE

        receivers.register()
        periodic_tasks_add(SCHEDULE)
        campaign_panel_register("notification_log", notification_log_panel)
