"""Serves the HTTP API in the agent's own asyncio loop with uvicorn, on a socket bound up front."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from agent.config_checks import is_loopback
from agent.web.api import build_api
from agent.web.facade import AgentFacade
from common.cancel import within

if TYPE_CHECKING:
    from agent.config import HttpSection

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class _InLoopServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the agent's loop owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The API, console, metrics and health on `http.host:http.port`; an async context manager."""

    def __init__(self, config: HttpSection, facade: AgentFacade) -> None:
        token = config.token.get_secret_value() if config.token is not None else None
        if token is None and not is_loopback(config.host):
            logger.warning(
                "http is bound to %s without http.token: anyone who reaches it can ask and read", config.host
            )
        self.config = config
        self.host = config.host
        self.port = config.port
        self.app = build_api(facade, token=token, console=config.console)
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> str:
        """Where the server listens, http://host:port (the bound port once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where clients reach the API (`http.public_url`, else http://host:port)."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> WebServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"http: cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("http server stopped while starting")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await within(self._task, STOP_TIMEOUT_S)
            except TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()
