from django import template

from entitlements.models import Finding

register = template.Library()

_LABELS = dict(Finding.choices)


@register.filter
def finding_label(value: str) -> str:
    return _LABELS.get(value, value)
