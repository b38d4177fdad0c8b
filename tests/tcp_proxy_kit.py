"""A TCP proxy for the tests, in asyncio: put it between a client and PostgreSQL, then
break the path on purpose.

* :meth:`TcpProxy.reset_one` resets one open connection (the client sees its socket
  closed mid-statement, as after a network blip or a killed backend).
* :meth:`TcpProxy.go_dark` resets every open connection and refuses new ones (the
  listening socket is closed, so a connect gets ``ECONNREFUSED``) until
  :meth:`TcpProxy.come_back` listens on the same port again.
* :meth:`TcpProxy.chaos` does both at random until stopped: resets at random moments,
  and the given number of dark spells.

Every connection is two pumps (client to server, server to client); a reset aborts both
transports, so each side sees the connection drop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct


class _Link:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def reset(self) -> None:
        for writer in (self.client, self.server):
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends a RST, not a FIN, as a dropped network path does.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.resets = 0  # connections reset on purpose
        self.dark_spells = 0

    @property
    def dark(self) -> bool:
        return self._server is None

    @property
    def open_links(self) -> int:
        return len(self._links)

    async def start(self) -> int:
        """Listen (on the given port, or a free one the first time); return the port."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        await self._close_listener()
        self.reset_all()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def reset_one(self, rng: random.Random) -> bool:
        if not self._links:
            return False
        link = rng.choice(sorted(self._links, key=id))
        self._links.discard(link)
        link.reset()
        self.resets += 1
        return True

    def reset_all(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.reset()
            self.resets += 1

    async def go_dark(self) -> None:
        """Reset every open connection and refuse new ones."""
        self.dark_spells += 1
        await self._close_listener()
        self.reset_all()

    async def come_back(self) -> None:
        await self.start()

    async def chaos(
        self,
        stop: asyncio.Event,
        *,
        rng: random.Random,
        mean_reset_interval_seconds: float,
        dark_spells: int,
        dark_seconds: float,
        first_dark_after_seconds: float,
        dark_every_seconds: float,
    ) -> None:
        """Reset connections at random (exponential gaps) and go dark ``dark_spells``
        times, the first after ``first_dark_after_seconds``, then every
        ``dark_every_seconds``, each for ``dark_seconds``; until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        next_dark = loop.time() + first_dark_after_seconds
        spells = 0
        while not stop.is_set():
            gap = rng.expovariate(1.0 / mean_reset_interval_seconds)
            if spells < dark_spells:
                gap = min(gap, max(0.0, next_dark - loop.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(gap):
                    await stop.wait()
            if stop.is_set():
                return
            if spells < dark_spells and loop.time() >= next_dark:
                spells += 1
                await self.go_dark()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(dark_seconds):
                        await stop.wait()
                await self.come_back()
                next_dark = loop.time() + dark_every_seconds
                continue
            self.reset_one(rng)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dark:
            _Link(writer, writer).reset()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _Link(writer, writer).reset()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.connections += 1
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, link))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                data = await source.read(65536)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other, so neither waits on a half-open connection.
            self._links.discard(link)
            with contextlib.suppress(Exception):
                sink.close()
