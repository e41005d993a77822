"""Benchmarks of each area against raw SQL in the same run: `make bench` or `python manage.py bench [AREA]`.

This package is development tooling: it is not part of the product and is not copied into the Docker image.
"""
