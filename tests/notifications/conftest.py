import os
from pathlib import Path

from django.conf import settings

if not os.environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
    settings.configure(
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [Path(__file__).resolve().parents[2] / "templates"],
            }
        ],
        DEFAULT_FROM_EMAIL="reviews@thalian.example",
    )
    import django

    django.setup()
