"""Conversions: an order form that reports a sale to Keitaro, and a refund."""

from __future__ import annotations

import os
from decimal import Decimal

from flask import Flask, request

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# Maintenance -> Postback URL in Keitaro. Its key is a secret: keep it
# out of the code, as the campaign tokens.
app.config["KEITARO_POSTBACK_URL"] = os.environ.get("KEITARO_POSTBACK_URL")
# Where conversions wait until the tracker has them. The default is
# "keitaro-postbacks.sqlite3" in the app's instance folder.
app.config["KEITARO_POSTBACK_OUTBOX"] = os.environ.get(
    "KEITARO_POSTBACK_OUTBOX", "keitaro-postbacks.sqlite3"
)
keitaro = KeitaroExtension(app)


@app.post("/order")
@keitaro_campaign("CAMPAIGN_TOKEN")
def order() -> str:
    order_id = request.form["order_id"]
    # The order's own id as the transaction id: the same order reported
    # twice is one sale, another order of the same visitor is another.
    result = current_click.postback(
        "sale", payout=Decimal("29.90"), currency="USD", tid=order_id
    )
    # "delivered", or "queued" while the tracker is down: sent later.
    return f"Thank you for order {order_id}! ({result.outcome})"


def refund(sub_id: str) -> str:
    """A refund, from a payment webhook or a cron job: no visitor here."""
    with app.app_context():
        return keitaro.postback(sub_id, "rejected").outcome
