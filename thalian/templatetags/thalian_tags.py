import functools

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import slugify

register = template.Library()


@functools.lru_cache(maxsize=4096)
def _nav_url(urlconf, script_prefix: str, url_name: str, args: tuple) -> str:
    """reverse() for the navigation, remembered: every page draws about twenty links (a good part of a light
    page's rendering otherwise). The URL conf and script prefix are part of the key, and the cache is emptied
    when the URL settings change (tests), so the answer is always reverse()'s."""
    try:
        return reverse(url_name, urlconf=urlconf, args=args)
    except NoReverseMatch:
        return ""


@receiver(setting_changed)
def _nav_urls_forget(*, setting, **kwargs):
    if setting in ("ROOT_URLCONF", "FORCE_SCRIPT_NAME"):
        _nav_url.cache_clear()


@register.simple_tag(takes_context=True)
def nav_link(context, url_name: str, label: str, *args):
    """A navigation link that marks the current page; pages not installed yet are simply not shown."""
    url = _nav_url(get_urlconf(), get_script_prefix(), url_name, args)
    if not url:
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


@register.inclusion_tag("_bar_chart.html")
def bar_chart(bars, title: str, unit: str = ""):
    """A horizontal bar chart as server-rendered SVG (the CSP allows no inline style or script): one Bar per row,
    each linking to where people act on it."""
    from thalian.home import chart_rows

    rows = chart_rows(list(bars), width=180)
    return {
        "rows": rows, "title": title, "unit": unit, "height": max(28 * len(rows), 28),
        "chart_id": "chart-" + slugify(title),
    }


@register.simple_tag
def super_admin_emails(organization) -> str:
    """Who can change the plan, for the upgrade call to action of members who cannot."""
    from thalian.models import Membership
    from thalian.permissions import Role

    emails = Membership.objects.filter(organization=organization, role=Role.SUPER_ADMIN).values_list(
        "user__email", flat=True
    )
    return ",".join(sorted(emails)[:5])


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str):
    """A sortable column header: links to ascending order, then descending; marks the current order for
    screen readers (aria-sort). Uses `sort` and `sort_query` (the list's other parameters) from the context."""
    current = context.get("sort") or ""
    query = context.get("sort_query") or ""
    ascending_now = current == key
    descending_now = current == f"-{key}"
    target = f"-{key}" if ascending_now else key
    href = f"?{query}&sort={target}" if query else f"?sort={target}"
    css = "sorted desc" if descending_now else ("sorted" if ascending_now else "")
    aria = ' aria-sort="ascending"' if ascending_now else (' aria-sort="descending"' if descending_now else "")
    return format_html(
        '<th scope="col"{}><a href="{}"{}>{}</a></th>',
        mark_safe(aria),  # one of two constant strings
        href,
        format_html(' class="{}"', css) if css else "",
        label,
    )


@register.inclusion_tag("_list_total.html")
def list_total(total: int, capped: bool, noun: str, plural: str = ""):
    return {"total": total, "capped": capped, "noun": noun if total == 1 and not capped else (plural or noun + "s")}
