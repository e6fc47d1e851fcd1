"""``python -m flask_keitaro.emulator [--config campaigns.toml] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .server import serve


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {text!r}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_keitaro.emulator", description="Local Keitaro Click API v3 server."
    )
    parser.add_argument(
        "--config", help="campaigns TOML file (default: the built-in test campaign)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=_port, default=8099, help="port (default: 8099; 0: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return serve(args.config, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
