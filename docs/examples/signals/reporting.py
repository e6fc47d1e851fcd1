"""Click failures to an error reporter, and click timings to metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_keitaro import (
    CampaignTokenRejected,
    Click,
    ClickAPIDisabled,
    TrackerError,
    click_failed,
    click_succeeded,
)

#: ``capture_message(message, level=..., extras=...)``, as Sentry's SDK has it.
CaptureMessage = Callable[..., Any]
#: ``record_timing(name, seconds)``, as a statsd or Prometheus client gives.
RecordTiming = Callable[[str, float], Any]


def init_click_reporting(
    app: Flask, capture_message: CaptureMessage, record_timing: RecordTiming
) -> None:
    """Report the app's click failures, and time its clicks."""

    def on_failure(
        sender: Flask, error: TrackerError, elapsed: float, **extra: Any
    ) -> None:
        # A wrong token or a disabled Click API is a set-up mistake that
        # wants a person; a timeout or an outage wants an alert if it lasts.
        setup_mistake = isinstance(
            error, CampaignTokenRejected | ClickAPIDisabled
        )
        capture_message(
            f"Keitaro click failed: {error.kind}",  # the same for each kind
            level="error" if setup_mistake else "warning",
            extras={
                "error": str(error),  # never holds the campaign token
                "status": error.status,
                "elapsed": round(elapsed, 3),
            },
        )

    def on_success(
        sender: Flask, click: Click, elapsed: float, **extra: Any
    ) -> None:
        record_timing("keitaro.click", elapsed)

    # Only this app's clicks; weak=False keeps the local functions alive.
    click_failed.connect(on_failure, sender=app, weak=False)
    click_succeeded.connect(on_success, sender=app, weak=False)
