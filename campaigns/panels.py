"""Panels that areas built on campaigns add to the campaign page, without campaigns importing them.

An area registers a function in its AppConfig.ready(): ``campaign_panel_register("name", function)``;
``function(request=request, campaign=campaign)`` returns the context value for the page's template, or None
to show nothing (for a role that may not see it, say)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_PANELS: dict[str, Callable[..., Any]] = {}


def campaign_panel_register(name: str, function: Callable[..., Any]) -> None:
    if _PANELS.get(name, function) is not function:
        raise RuntimeError(f"a campaign page panel is already named {name!r}")
    _PANELS[name] = function


def campaign_panels(*, request, campaign) -> dict[str, Any]:
    values = {}
    for name, function in _PANELS.items():
        value = function(request=request, campaign=campaign)
        if value is not None:
            values[name] = value
    return values
