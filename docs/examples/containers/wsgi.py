"""The example site as its container runs it: settings from the environment."""

from __future__ import annotations

import os

from flask import Config

from example_site import create_app

# FLASK_SECRET_KEY, FLASK_KEITARO_TRACKER_URL, FLASK_KEITARO_POSTBACK_URL,
# FLASK_KEITARO_POSTBACK_OUTBOX...: every FLASK_* variable, its value read
# as JSON when it is JSON. The same in every replica.
config = Config(os.getcwd())
config.from_prefixed_env()
instance = os.environ.get("SITE_INSTANCE", "instance")
app = create_app(config, instance_path=instance)
