"""Signals sent around each click, with the app (or the WSGI middleware) as sender (blinker)."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent before a Click API call, with ``token_hint`` (the token's last 4 characters, never
#: the whole token) and ``visitor`` (a :class:`~flask_keitaro.visitor.Visitor`).
click_requested = _signals.signal("keitaro-click-requested")

#: Sent after the tracker gave a valid answer, with ``click`` (the
#: :class:`~flask_keitaro.result.Click` made of it; its ``raw`` is the answer) and ``elapsed``
#: (seconds, float).
click_succeeded = _signals.signal("keitaro-click-succeeded")

#: Sent when a call failed, with ``error`` (a :class:`~flask_keitaro.errors.TrackerError`)
#: and ``elapsed`` (seconds, float).
click_failed = _signals.signal("keitaro-click-failed")

#: Sent when a click was restored from the state cookie or from a link, with ``click``
#: (the restored :class:`~flask_keitaro.result.Click`); no call was made.
click_restored = _signals.signal("keitaro-click-restored")

#: Sent when the circuit breaker of the app's tracker changes state, with ``state`` (the new
#: one: ``"closed"``, ``"open"`` or ``"half_open"``) and ``previous``.
breaker_changed = _signals.signal("keitaro-breaker-changed")
