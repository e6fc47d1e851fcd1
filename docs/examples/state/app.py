"""Click state: returning visitors restored, keys rotated, always clicking."""

from __future__ import annotations

import os

from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
# Signs the click state cookie: the same key on every worker and machine.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
# Keys that signed the cookies visitors still hold, oldest first: checked,
# never used to sign. Rotate by moving the old SECRET_KEY here (at the end)
# and setting a new one.
app.config["SECRET_KEY_FALLBACKS"] = [
    key for key in os.environ.get("OLD_SECRET_KEYS", "").split(",") if key
]
# Off by default: a link skips the tracker, filters included (see the guide).
app.config["KEITARO_RESTORE_FROM_QUERY"] = True
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    # A returning visitor (or one back from the offer with ?_subid=&_token=)
    # is restored: no call to the tracker, the same sub_id as before.
    seen = "restored" if current_click.restored else "new"
    return f"{seen} click {current_click.sub_id}"


@app.route("/spin")
@keitaro_campaign("CAMPAIGN_TOKEN", restore=False)
def spin() -> str:
    # restore=False: every visit is a click, the tracker decides each time.
    return f"click {current_click.sub_id}"
