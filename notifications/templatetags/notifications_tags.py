from django import template

from notifications import selectors

register = template.Library()

LOG_LIMIT = 200


@register.inclusion_tag("notifications/_campaign_log.html")
def notification_log(campaign, limit: int = LOG_LIMIT):
    """The campaign page renders {% load notifications_tags %}{% notification_log campaign %}."""
    rows = list(selectors.notifications_for_campaign(campaign=campaign)[: limit + 1])
    shown = rows[:limit]
    failed = sum(1 for row in shown if row.status == "failed")
    return {"notifications": shown, "truncated": len(rows) > limit, "campaign": campaign, "failed": failed}
