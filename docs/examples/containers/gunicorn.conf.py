"""gunicorn in the container: gunicorn -c gunicorn.conf.py wsgi:app."""

from __future__ import annotations

import os

# All interfaces inside the container; the compose file publishes the port.
bind = os.environ.get("BIND", "0.0.0.0:8000")
# Processes per container. Each has its own tracker connections and its
# own circuit breaker: with 2 workers and KEITARO_BREAKER_FAILURES = 5, a
# dead tracker costs up to 10 visits the deadline per replica before every
# breaker is open.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 8
# Above the Click API call's deadline (KEITARO_TIMEOUT: connect + read).
timeout = 30
# docker stop sends SIGTERM, then SIGKILL 10 s later: finish the visits in
# progress before that. A conversion being sent at the kill stays in the
# outbox; another worker sends it when its claim runs out.
graceful_timeout = 8
keepalive = 5
# Build the app once, then fork: each worker opens its own tracker and
# database connections.
preload_app = True
# The container's log is its standard streams.
accesslog = "-"
errorlog = "-"
