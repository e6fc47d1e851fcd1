"""Flask and WSGI integration for Keitaro's Click API v3."""

from __future__ import annotations

from ._version import __version__
from .errors import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    ConfigurationError,
    InvalidTrackerResponse,
    KeitaroError,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)

__all__ = [
    "CampaignTokenRejected",
    "ClickAPIDisabled",
    "ConfigurationError",
    "InvalidTrackerResponse",
    "KeitaroError",
    "TrackerError",
    "TrackerTimeout",
    "TrackerUnavailable",
    "__version__",
]
