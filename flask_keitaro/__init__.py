"""Flask and WSGI integration for Keitaro's Click API v3."""

from __future__ import annotations

from ._version import __version__
from .click import Click
from .client import ClickAPIClient
from .errors import (
    BreakerOpen,
    CampaignTokenRejected,
    ClickAPIDisabled,
    ConfigurationError,
    InvalidTrackerResponse,
    KeitaroError,
    OutboxError,
    PostbackError,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)
from .extension import (
    KeitaroExtension,
    current_click,
    keitaro_campaign,
    render_landing,
    token_from_config,
)
from .fields import ClickOptions
from .middleware import KeitaroMiddleware
from .postback import Conversion, PostbackClient, PostbackResult
from .result import ClickInfo, ClickResult
from .route import Route
from .signals import (
    breaker_changed,
    click_failed,
    click_requested,
    click_restored,
    click_succeeded,
    postback_delivered,
    postback_failed,
    postback_queued,
)
from .visitor import Visitor

__all__ = [
    "BreakerOpen",
    "CampaignTokenRejected",
    "Click",
    "ClickAPIClient",
    "ClickAPIDisabled",
    "ClickInfo",
    "ClickOptions",
    "ClickResult",
    "ConfigurationError",
    "Conversion",
    "InvalidTrackerResponse",
    "KeitaroError",
    "KeitaroExtension",
    "KeitaroMiddleware",
    "OutboxError",
    "PostbackClient",
    "PostbackError",
    "PostbackResult",
    "Route",
    "TrackerError",
    "TrackerTimeout",
    "TrackerUnavailable",
    "Visitor",
    "__version__",
    "breaker_changed",
    "click_failed",
    "click_requested",
    "click_restored",
    "click_succeeded",
    "current_click",
    "keitaro_campaign",
    "postback_delivered",
    "postback_failed",
    "postback_queued",
    "render_landing",
    "token_from_config",
]
