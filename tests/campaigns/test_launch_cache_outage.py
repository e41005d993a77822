# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""The launch progress lives in the cache only as a courtesy: a cache (Redis) that is down while the snapshot
runs must not abort the launch."""

from __future__ import annotations

import socket

import pytest

from campaigns import launch
from campaigns.models import CampaignStatus, ReviewItem
from thalian.tenancy import scope

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401


@pytest.fixture
def cache_down(settings):
    """The default cache is a Redis server that refuses connections (a closed port on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{port}/0"}
    }


def test_a_launch_completes_while_the_cache_is_unreachable(cache_down, launched, inventory):
    campaign = launched(scope={"applications": ["GitHub", "Salesforce"]}, reviewer_strategy="manager")
    assert campaign.status == CampaignStatus.ACTIVE
    with scope(inventory.org):
        assert ReviewItem.objects.filter(campaign=campaign).count() == campaign.item_count == 6
        assert launch.campaign_launch_progress(campaign=campaign) == 100
