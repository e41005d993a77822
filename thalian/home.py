"""The organization's home page is assembled from sections that each app contributes.

The platform core cannot know about campaigns, inventory or tickets (apps depend one way), so an app registers
a provider in its AppConfig.ready(); the home view asks every provider for its section. A provider receives
the request (organization and membership set, scope active) and returns a Section, or None when it has
nothing for this member."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.http import HttpRequest


@dataclass
class Section:
    template: str  # rendered with `section` = this object
    order: int = 100  # smaller first
    wide: bool = False  # spans the whole width of the home grid
    data: dict = field(default_factory=dict)


Provider = Callable[[HttpRequest], "Section | None"]
_providers: list[Provider] = []


def home_section_register(provider: Provider) -> Provider:
    """Adds a provider once (AppConfig.ready() may run more than once in tests)."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def home_sections(request: HttpRequest) -> list[Section]:
    sections = [s for s in (provider(request) for provider in _providers) if s is not None]
    return sorted(sections, key=lambda s: s.order)


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: label, value, the link to act on it and a colour class (ok, bad, warn or '')."""

    label: str
    value: int
    url: str = ""
    tone: str = ""
    note: str = ""


def chart_rows(bars: list[Bar], *, width: int = 100) -> list[dict]:
    """Bar lengths in user units of an SVG viewBox `width` wide (SVG attributes, so no inline style is needed)."""
    top = max((b.value for b in bars), default=0)
    return [
        {"bar": b, "length": round(width * b.value / top) if top else 0, "y": i * 28} for i, b in enumerate(bars)
    ]
