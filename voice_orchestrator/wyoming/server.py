"""The Wyoming listener of one ingress replica: started, moved or stopped by the live settings
(`wyoming_port`, `wyoming_host`), on the replica's event loop, so its requests share the HTTP routes' gate.

Ingress replicas on one node bind the same port with SO_REUSEPORT: the kernel hands each new connection to
one of them. A connection beyond `wyoming_max_connections` gets an `error` event and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from wyoming.error import Error
from wyoming.event import async_write_event

from voice_orchestrator.api.openai.gateway import OpenAIGateway
from voice_orchestrator.errors import OrchestratorErrorCode
from voice_orchestrator.metrics import WYOMING_CONNECTIONS, WYOMING_REQUESTS, Meter, outcome_of
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.wyoming.connection import WyomingConnection
from voice_orchestrator.wyoming.framing import MAX_HEADER_BYTES

logger = logging.getLogger("voice_orchestrator.wyoming")
REFUSAL_WRITE_TIMEOUT_S = 2.0


class WyomingServer:
    def __init__(self, gateway: OpenAIGateway, meter: Meter) -> None:
        self._gateway = gateway
        self._meter = meter
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def apply(self, settings: IngressSettings) -> None:
        """Listen where the settings say (nowhere when `wyoming_port` is None). A port that cannot be bound
        raises: the new settings are refused and the old listener keeps serving."""
        wanted = None if settings.wyoming_port is None else (settings.wyoming_host, settings.wyoming_port)
        if wanted == self._address:
            return
        if wanted is None:
            await self.close()
            return
        server = await self._listen(*wanted)  # bound before the old one goes: a failure changes nothing
        await self.close(keep_connections=True)
        self._server, self._address = server, wanted
        logger.info("Wyoming door listening on %s:%d", *wanted)

    async def close(self, keep_connections: bool = False) -> None:
        """Stop listening; unless `keep_connections`, end the open connections too."""
        server, self._server, self._address = self._server, None, None
        if server is not None:
            server.close()
            await server.wait_closed()
        if not keep_connections:
            for task in list(self._connections):
                task.cancel()

    async def _listen(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self._accept, host, port, reuse_address=True, reuse_port=True, limit=MAX_HEADER_BYTES
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:  # events are small and sent one by one: no Nagle delay on each
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limit = self._gateway.settings.wyoming_max_connections
        if len(self._connections) >= limit:
            await self._refuse(writer, limit)
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._meter.record(WYOMING_CONNECTIONS, float(len(self._connections)))
        try:
            reason = await WyomingConnection(self._gateway, reader, writer, self._meter).run()
            logger.debug("Wyoming connection closed: %s", reason)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._connections.discard(task)
            self._meter.record(WYOMING_CONNECTIONS, float(len(self._connections)))

    async def _refuse(self, writer: asyncio.StreamWriter, limit: int) -> None:
        code = OrchestratorErrorCode.TOO_MANY_REQUESTS
        tags = {"kind": "connect", "outcome": outcome_of(code), "error_code": code.value}
        self._meter.record(WYOMING_REQUESTS, 1.0, tags)
        logger.warning("Wyoming connection refused: %d open (wyoming_max_connections)", limit)
        error = Error(text=f"The server holds {limit} Wyoming connections already; retry shortly.", code=code)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REFUSAL_WRITE_TIMEOUT_S):
                await async_write_event(error.event(), writer)
        writer.close()
