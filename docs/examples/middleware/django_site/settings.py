"""The Django project's settings: Django's own, and the tracker's."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "change-me")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []

# Read by wsgi.py, where the Keitaro middleware wraps the project.
KEITARO_TRACKER_URL = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
KEITARO_CAMPAIGN_TOKEN = os.environ.get(
    "KEITARO_CAMPAIGN_TOKEN", "CAMPAIGN_TOKEN"
)
