from __future__ import annotations

import asyncio
import socket
import urllib.parse

from kairo_apify_sim import server


async def test_a_start_whose_body_never_arrived_creates_no_run() -> None:
    """Like Apify, the simulator ignores a request the client abandoned mid-body."""
    async with server.running({"seed": 1}) as sim:
        url = urllib.parse.urlsplit(sim.base_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(
            b"POST /v2/actors/clockworks~tiktok-scraper/runs HTTP/1.1\r\n"
            b"Host: sim\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n"
        )  # the headers promise a body that never comes
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        assert await reader.read() == b""
        # A complete request afterwards is served normally, so the server saw both.
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        body = b'{"profiles": ["acme"], "resultsPerPage": 1}'
        writer.write(
            b"POST /v2/actors/clockworks~tiktok-scraper/runs HTTP/1.1\r\nHost: sim\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 201")
        assert sim.stats()["starts"] == 1


def test_the_listening_socket_turns_nagle_off_for_every_connection() -> None:
    """asyncio disables Nagle only on accepted sockets whose proto is IPPROTO_TCP; with Nagle
    on, every answer stalled ~40 ms on the client's delayed ACK (the header and body writes)."""
    sock = server._bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
