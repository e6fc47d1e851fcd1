"""Run the example site with the emulator beside it.

``python -m example_site [--host H] [--port P] [--emulator-port P]``.

Without ``KEITARO_TRACKER_URL`` in the environment the local Click API emulator
starts in a thread with ``example_site/campaigns.toml``; with it, the site talks to
that tracker (set ``SITE_LANDING_TOKEN``, ``SITE_GO_TOKEN``, ``SITE_PROMO_TOKEN`` and
``SITE_HERBS_TOKEN`` to your campaigns' tokens, and ``KEITARO_POSTBACK_URL`` to your
postback URL).
Conversions wait for the tracker in the outbox, a file in the app's instance folder.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from .server import DemoServer

_ENV_KEYS = (
    "SITE_LANDING_TOKEN",
    "SITE_GO_TOKEN",
    "SITE_PROMO_TOKEN",
    "SITE_HERBS_TOKEN",
    "KEITARO_POSTBACK_URL",
)

# The --help text: plain words for a terminal (the module docstring is for the docs).
_DESCRIPTION = """\
Run the example landing site with the local Click API emulator beside it.

Without KEITARO_TRACKER_URL in the environment, the emulator starts in a thread
with example_site/campaigns.toml. With it, the site talks to that tracker: set
SITE_LANDING_TOKEN, SITE_GO_TOKEN, SITE_PROMO_TOKEN and SITE_HERBS_TOKEN to your
campaigns' tokens, and KEITARO_POSTBACK_URL to your tracker's postback URL.
Conversions the tracker does not take at once wait in the outbox, a file in the
app's instance folder (printed at start), and are sent when it is back.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the demo until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m example_site",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    parser.add_argument(
        "--emulator-port",
        type=int,
        default=8099,
        help="port of the emulator on 127.0.0.1, when it runs (default: %(default)s; 0: any)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = {key: os.environ[key] for key in _ENV_KEYS if os.environ.get(key)}
    demo = DemoServer(
        args.host,
        args.port,
        tracker_url=os.environ.get("KEITARO_TRACKER_URL"),
        config=config,
        emulator_port=args.emulator_port,
    )
    try:
        demo.bind()
    except OSError as exc:
        print(f"cannot start the demo: {exc}", file=sys.stderr)
        return 1

    print(f" * Example site:        {demo.url}/", flush=True)
    if demo.emulator_log_url:
        print(f" * Emulator click log:  {demo.emulator_log_url}", flush=True)
    else:
        print(f" * Tracker:             {demo.tracker_url}", flush=True)
    outbox = demo.outbox_path or "none (KEITARO_POSTBACK_URL is not set)"
    print(f" * Postback outbox:     {outbox}", flush=True)
    print(" * Press Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        demo.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
