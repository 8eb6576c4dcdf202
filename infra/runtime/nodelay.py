"""TCP_NODELAY on every connection a uvicorn worker accepts: `uvicorn --loop infra.runtime.nodelay:event_loop`
(the server command passes it through `mlflow server --uvicorn-opts`).

Why: with `--workers N` uvicorn's supervisor binds the listening socket itself with
`socket.socket(family)`, protocol 0, and asyncio sets TCP_NODELAY only on sockets whose protocol
is IPPROTO_TCP (`asyncio.base_events._set_nodelay`), so no accepted connection gets it (a single
worker binds through `loop.create_server(host, port)`, protocol 6, and does). Without it, Nagle's
algorithm holds a response's second small segment (uvicorn writes the headers and the body
separately) until the client acknowledges the first, and a client that delays its ACK (Linux: up to
40 ms) stalls every such response on a keep-alive connection (upstream uvicorn issue #3149).

The loop is asyncio's own, with `create_server` wrapping the protocol factory so that each
accepted transport's socket gets TCP_NODELAY before the protocol sees it: public asyncio API only.
"""

from __future__ import annotations

import asyncio
import socket


def set_nodelay(sock) -> None:
    """TCP_NODELAY on a TCP socket (asyncio's TransportSocket or a socket); nothing on others."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer is already gone: nothing to send either way
        pass


def _nodelay_factory(protocol_factory):
    def factory():
        protocol = protocol_factory()
        made = protocol.connection_made

        def connection_made(transport):
            set_nodelay(transport.get_extra_info("socket"))
            made(transport)

        protocol.connection_made = connection_made
        return protocol

    return factory


class NoDelayEventLoop(asyncio.SelectorEventLoop):
    async def create_server(self, protocol_factory, *args, **kwargs):
        return await super().create_server(_nodelay_factory(protocol_factory), *args, **kwargs)


def event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (`--loop infra.runtime.nodelay:event_loop`), called in every worker."""
    return NoDelayEventLoop()
