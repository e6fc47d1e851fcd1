"""Conversions through the task queue a site already runs (Celery, RQ)."""

from __future__ import annotations

import os

from flask_keitaro import Conversion
from flask_keitaro.postback import deliver


def conversion_fields(sub_id: str, order_id: str) -> dict[str, str]:
    """What the web process queues: a checked conversion, JSON-friendly.

    A bad argument raises ValueError here, before anything is queued.
    """
    conversion = Conversion.make(
        sub_id, "sale", payout="29.90", currency="USD", tid=order_id
    )
    return conversion.to_dict()


def send_conversion(fields: dict[str, str]) -> None:
    """The task: one postback. A TrackerError makes the queue retry it."""
    deliver(os.environ["KEITARO_POSTBACK_URL"], fields, timeout=(2.0, 5.0))


# Celery: retries with a capped, jittered back-off, for as long as it takes.
#
#     from flask_keitaro import TrackerError
#
#     send = celery_app.task(
#         autoretry_for=(TrackerError,), retry_backoff=10,
#         retry_backoff_max=900, retry_jitter=True, max_retries=None,
#     )(send_conversion)
#     send.delay(conversion_fields(current_click.sub_id, order_id))
#
# RQ:
#
#     from rq import Retry
#
#     queue.enqueue(
#         send_conversion, conversion_fields(current_click.sub_id, order_id),
#         retry=Retry(max=20, interval=[10, 60, 300, 900]),
#     )
