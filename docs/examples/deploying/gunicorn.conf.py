"""gunicorn's settings for the site: gunicorn -c gunicorn.conf.py wsgi:app."""

from __future__ import annotations

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# Processes: about one per core. Each has its own pool of connections
# to the tracker, opened on its first clicks and kept alive.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A click waits on the tracker for a few milliseconds to seconds; threads
# let a worker serve other visitors meanwhile.
worker_class = "gthread"
threads = 8
# Above the Click API call's deadline (KEITARO_TIMEOUT: connect + read),
# so that a slow tracker ends in the fail mode, not in a killed worker.
timeout = 30
graceful_timeout = 30
# Keep-alive with the proxy or load balancer in front.
keepalive = 5
# Build the app once in the master, then fork the workers: each worker
# opens its own tracker connections and outbox handle on first use.
preload_app = True
