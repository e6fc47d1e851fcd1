"""Loopback peers that make a tracker far away or dead: a delaying TCP proxy, a silent server.

:class:`DelayProxy` stands between the site and a tracker and holds every chunk of bytes for
``delay`` seconds in each direction, so one round trip costs ``2 * delay`` (a tracker on
another continent) while bandwidth stays loopback's. A new connection also pays the round
trip of its TCP handshake: its first bytes leave one round trip after the connection opened.
:class:`SilentTracker` accepts connections and never answers, then refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

from testsupport.service import Service


class DelayProxy(Service):
    """A TCP proxy on 127.0.0.1 adding ``delay`` seconds each way to ``upstream_port``."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        #: Connections the proxy accepted (each one a TCP handshake to the far tracker).
        self.accepted = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def round_trip_ms(self) -> float:
        """One round trip through the proxy, by construction."""
        return 2 * self.delay * 1000

    def start(self) -> DelayProxy:
        """Listen on a free loopback port."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def stop(self) -> None:
        """Close every connection and stop the proxy's thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        # The far tracker's handshake: the client may send only after one round trip.
        handshake_done = self._loop.time() + 2 * self.delay
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A cancelled handler (the proxy stopping) would be reported by asyncio as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, handshake_done),
                self._pipe(upstream_reader, client_writer, 0.0),
                return_exceptions=True,
            )
        for writer in (client_writer, upstream_writer):
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, not_before: float
    ) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds late, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((max(self._loop.time(), not_before) + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()


class SilentTracker(Service):
    """A TCP server on 127.0.0.1 that accepts connections and never answers.

    :meth:`refuse` closes the listening socket: from then on connections are refused, as
    for a tracker whose server is down.
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.05)
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-tracker", daemon=True)

    @property
    def url(self) -> str:
        """The tracker's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SilentTracker:
        """Accept connections in a thread, and hold them open unanswered."""
        self._thread.start()
        return self

    def refuse(self) -> None:
        """Stop listening: every new connection is refused from now on."""
        self._stop.set()
        self._thread.join()
        self._sock.close()
        # Wait until the port really refuses (the kernel drops the listener at once).
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except ConnectionRefusedError:
                return
            time.sleep(0.01)
        raise RuntimeError("the silent tracker's port still accepts connections")

    def stop(self) -> None:
        """Close everything."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sock.close()
        for conn in self._held:
            conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)  # read nothing, answer nothing, close nothing
