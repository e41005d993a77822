from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Benchmarks against raw SQL (`python manage.py bench`); present in a checkout, not in the image."""

    name = "bench"
    verbose_name = "Benchmarks"
