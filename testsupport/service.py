"""Service: a peer the tests and the benchmarks start and stop, ``with Peer() as peer: ...``."""

from __future__ import annotations

from typing import Self


class Service:
    """A peer started by :meth:`start` and stopped by :meth:`stop`, or used in a ``with``."""

    def start(self) -> Self:
        """Start the peer; return it."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the peer and free what it held."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
