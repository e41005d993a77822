from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context, url_name: str, label: str, *args):
    """A navigation link that marks the current page; pages not installed yet are simply not shown."""
    try:
        url = reverse(url_name, args=args)
    except NoReverseMatch:
        return ""
    request = context.get("request")
    current = request is not None and (
        request.path == url or (url.count("/") > 3 and request.path.startswith(url))
    )
    if current:
        return format_html('<li><a href="{}" aria-current="page">{}</a></li>', url, label)
    return format_html('<li><a href="{}">{}</a></li>', url, label)


@register.filter
def badge_class(value: str) -> str:
    return f"badge badge-{str(value).replace('_', '-')}"
