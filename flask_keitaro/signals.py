"""Signals sent around each click and each postback, with the app (or the middleware) as sender.

Blinker signals. Outside Flask, a :class:`~flask_keitaro.postback.PostbackClient` sends its
signals with the ``sender`` it was given.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent before a Click API call, with ``token_hint`` (the token's last 4 characters, never
#: the whole token) and ``visitor`` (a :class:`~flask_keitaro.visitor.Visitor`).
click_requested = _signals.signal("keitaro-click-requested")

#: Sent after the tracker gave a valid answer, with ``click`` (the
#: :class:`~flask_keitaro.Click` made of it; its ``raw`` is the answer) and ``elapsed``
#: (seconds, float).
click_succeeded = _signals.signal("keitaro-click-succeeded")

#: Sent when a call failed, with ``error`` (a :class:`~flask_keitaro.errors.TrackerError`)
#: and ``elapsed`` (seconds, float).
click_failed = _signals.signal("keitaro-click-failed")

#: Sent when a click was restored from the state cookie or from a link, with ``click``
#: (the restored :class:`~flask_keitaro.Click`); no call was made.
click_restored = _signals.signal("keitaro-click-restored")

#: Sent when a conversion's first delivery failed and it waits in the outbox to be retried,
#: with ``postback`` (a :class:`~flask_keitaro.outbox.PostbackRecord`: the conversion, its
#: outbox ``id``, ``attempts``, ``next_attempt``) and ``error`` (the
#: :class:`~flask_keitaro.errors.TrackerError`). Neither holds the postback key.
postback_queued = _signals.signal("keitaro-postback-queued")

#: Sent when the tracker acknowledged a conversion, at once or from the outbox, with
#: ``postback`` (a :class:`~flask_keitaro.outbox.PostbackRecord`).
postback_delivered = _signals.signal("keitaro-postback-delivered")

#: Sent when a retry from the outbox failed (the conversion stays queued; ``postback``
#: tells ``attempts`` and ``next_attempt``), or when a conversion could be neither stored
#: nor delivered (``postback.id`` is ``None``; a :exc:`~flask_keitaro.PostbackError` is
#: raised), with ``postback`` and ``error`` (the :class:`~flask_keitaro.errors.TrackerError`).
postback_failed = _signals.signal("keitaro-postback-failed")

#: Sent when the circuit breaker of the app's tracker changes state, with ``state`` (the new
#: one: ``"closed"``, ``"open"`` or ``"half_open"``) and ``previous``.
breaker_changed = _signals.signal("keitaro-breaker-changed")
