"""Real network parts for the proxy and TLS tests: certificates made here, a real tinyproxy, and
the simulator served over HTTPS with the peer of every request recorded.

tinyproxy binds its outgoing connections to 127.0.0.2, so the simulator can tell a request that
came through the proxy (peer 127.0.0.2) from one that came straight from the exporter (peer
127.0.0.1): a CONNECT tunnel hides the requests inside it from the proxy's log, but not their
origin from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web

from exporter.simulator import Simulator
from tests.e2e_helpers import ManagedProcess, free_port, require_binary

PROXY_BIND = "127.0.0.2"


@dataclass
class Certificates:
    """A CA and a server certificate for 127.0.0.1 and localhost, written as PEM files."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")

    def leaf_files(self, leaf: trustme.LeafCert, name: str) -> tuple[Path, Path]:
        """Write a leaf's chain and key as ``name.crt`` and ``name.key``."""
        cert_file, key_file = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file

    def server_context(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (leaf or self.server).configure_cert(context)
        return context


@dataclass
class PeerSimulator:
    """A simulator on loopback whose requests are counted by the peer address they came from."""

    sim: Simulator
    base_url: str
    peers: Counter[str] = field(default_factory=Counter)
    server_names: list[str | None] = field(default_factory=list)
    # Requests that arrived carrying a Proxy-Authorization header (a proxy password leak).
    proxy_authorization: int = 0


@contextlib.asynccontextmanager
async def serve_with_peers(
    sim: Simulator, context: ssl.SSLContext | None = None
) -> AsyncIterator[PeerSimulator]:
    """Serve `sim` on 127.0.0.1 (HTTPS with `context`), recording peers and SNI names."""
    app = sim.app()
    served = PeerSimulator(sim, "")

    @web.middleware
    async def record_peer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        served.peers[request.remote or "?"] += 1
        if "Proxy-Authorization" in request.headers:
            served.proxy_authorization += 1
        return await handler(request)

    app.middlewares.append(record_peer)
    if context is not None:
        context.sni_callback = lambda _socket, name, _context: served.server_names.append(name)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    scheme = "https" if context is not None else "http"
    served.base_url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/api/rest/v1"
    try:
        yield served
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def recording_proxy() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A fake proxy that records the head of each request it gets and answers 407: to see
    exactly which headers a client sends to a proxy (tinyproxy does not log them)."""
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads
    finally:
        server.close()
        await server.wait_closed()


def _write_tinyproxy_config(
    directory: Path, port: int, user: str, password: str
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Bind {PROXY_BIND}",
        "Timeout 30",
        f'LogFile "{log_file}"',
        "LogLevel Info",
        "MaxClients 50",
        "Allow 127.0.0.1",
        # No ConnectPort line: CONNECT is allowed to every port (the simulator's is random).
    ]
    if user:
        lines.append(f"BasicAuth {user} {password}")
    config = directory / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config, log_file


class Tinyproxy:
    """A real tinyproxy (Debian's) in the foreground, with its own config and log."""

    def __init__(self, process: ManagedProcess, port: int, log_file: Path) -> None:
        self.process = process
        self.port = port
        self.log_file = log_file

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, directory: Path, *, user: str = "", password: str = "") -> Tinyproxy:
        binary = require_binary("tinyproxy", package="tinyproxy")
        port = free_port()
        config, log_file = _write_tinyproxy_config(directory, port, user, password)
        process = await ManagedProcess.start(
            "tinyproxy", [binary, "-d", "-c", str(config)], directory / "tinyproxy.out"
        )
        proxy = cls(process, port, log_file)
        for _ in range(100):
            process.check_running()
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return proxy
            await asyncio.sleep(0.05)
        raise AssertionError(f"tinyproxy did not listen on {port}:\n{process.log_tail()}")

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged: ``CONNECT host:port`` or ``GET http://...``."""
        return re.findall(r"Request \(file descriptor \d+\): (\S+ \S+)", self.log())

    async def stop(self) -> None:
        await self.process.stop()


@contextlib.asynccontextmanager
async def tinyproxy(
    directory: Path, *, user: str = "", password: str = ""
) -> AsyncIterator[Tinyproxy]:
    proxy = await Tinyproxy.start(directory, user=user, password=password)
    try:
        yield proxy
    finally:
        await proxy.stop()
