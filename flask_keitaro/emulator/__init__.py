"""A local Click API v3 server: campaigns, streams, filters, actions, offers, postbacks, click log.

Run it with ``python -m flask_keitaro.emulator --config campaigns.toml``, in tests
with :class:`flask_keitaro.testing.ClickAPIEmulator`, or mount the app that
:func:`create_app` returns.
"""

from __future__ import annotations

from .app import EmulatorState, create_app, get_state
from .config import EmulatorConfig, EmulatorConfigError, load_config
from .server import make_emulator_server

__all__ = [
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorState",
    "create_app",
    "get_state",
    "load_config",
    "make_emulator_server",
]
