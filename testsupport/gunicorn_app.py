"""The fault apps as one WSGI app for gunicorn (``testsupport.gunicorn_app:create_app()``).

``FAULT_APPS`` (JSON, in the environment) maps a path prefix to a fault app's tracker URL,
fail mode, timeout and extra config: ``{"/open/3": {"url": ..., "fail_mode": "open",
"timeout": [0.5, 1.0], "config": {}}}``. ``/plain`` is a page without a click.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from testsupport.faults import fault_app


def create_app() -> Any:
    """The dispatcher of every fault app named in ``FAULT_APPS``."""
    mounts = {}
    for prefix, spec in json.loads(os.environ["FAULT_APPS"]).items():
        timeout = (float(spec["timeout"][0]), float(spec["timeout"][1]))
        mounts[prefix] = fault_app(spec["url"], spec["fail_mode"], timeout, **spec["config"])
    front = Flask(__name__)

    @front.route("/plain")
    def plain() -> str:
        return "plain page"

    front.wsgi_app = DispatcherMiddleware(front.wsgi_app, mounts)  # type: ignore[method-assign]
    return front
