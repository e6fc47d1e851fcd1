"""The Django project's WSGI entry point, behind the Keitaro middleware."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from flask_keitaro import KeitaroMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = KeitaroMiddleware(
    get_wsgi_application(),
    tracker_url=settings.KEITARO_TRACKER_URL,
    campaigns={"/": settings.KEITARO_CAMPAIGN_TOKEN},
    secret_key=settings.SECRET_KEY,
)
