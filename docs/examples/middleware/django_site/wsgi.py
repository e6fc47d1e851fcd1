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
    # Django's own cookies stay on the site, whatever they are named:
    # the session and CSRF cookies (private by their default names too),
    # and the messages cookie, which the private-name rule does not catch.
    private_cookies=[
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        "messages",
    ],
)
