"""A Django view reading the click the middleware made."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from flask_keitaro import Click


def landing(request: HttpRequest) -> HttpResponse:
    # The middleware puts the click in the WSGI environ.
    click: Click | None = request.environ.get("keitaro.click")
    if not click:
        return HttpResponse("<h1>Spring sale</h1>")
    return HttpResponse(
        format_html(
            '<h1>Spring sale</h1><a id="offer" href="{}">Get it</a>'
            "<footer>ref {}</footer>",
            click.offer_url() or "https://offer.example/",
            click.sub_id,
        )
    )
