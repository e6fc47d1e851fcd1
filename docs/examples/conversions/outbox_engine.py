"""The postback outbox in the database of the app's own SQLAlchemy engine."""

from __future__ import annotations

import os

from flask import Flask
from sqlalchemy import create_engine

from flask_keitaro import KeitaroExtension

app = Flask(__name__)
app.config["KEITARO_TRACKER_URL"] = os.environ["KEITARO_TRACKER_URL"]
app.config["KEITARO_POSTBACK_URL"] = os.environ["KEITARO_POSTBACK_URL"]
# The app's engine, made once; with Flask-SQLAlchemy it is db.engine.
engine = create_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
keitaro = KeitaroExtension(app, outbox_engine=engine)
