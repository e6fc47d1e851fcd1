"""Local landings chosen by the tracker: an A/B test of the site's pages."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, redirect
from flask.typing import ResponseReturnValue

from flask_keitaro import (
    Click,
    KeitaroExtension,
    current_click,
    keitaro_campaign,
    render_landing,
)

app = Flask(__name__)
# Signs the click state: a returning visitor sees the landing they saw.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
KeitaroExtension(app)


def video(click: Click, **context: Any) -> ResponseReturnValue:
    # A landing may be a callable: it gets the click and the view's context.
    return redirect(f"https://video.example/spring?ref={click.sub_id}")


@app.route("/")
@keitaro_campaign(
    "SPRING_AB_TOKEN",
    # The campaign's landing ids -> the site's pages.
    landings={101: "seeds.html", 102: "herbs.html", 103: video},
    # No landing_id, one not in the map, or the tracker down (fail-open).
    landing_default="seeds.html",
)
def spring() -> ResponseReturnValue:
    # The page the tracker chose, rendered with the view's context.
    return render_landing(offer_url=current_click.offer_url())
