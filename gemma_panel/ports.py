"""Can this machine listen at an address and port? Asked before a server starts, so a busy
port is one sentence with the next step, not a traceback from deep inside Tornado."""

from __future__ import annotations

import errno
import socket

from gemma_panel.errors import UserError


class PortUnavailable(UserError):
    """A server (the dashboard) cannot listen where it was asked to."""


def check_port_free(address: str, port: int) -> None:
    """Bind ``address:port`` for a moment, as the server will; a sentence if it cannot."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, OverflowError) as exc:
        raise PortUnavailable(f"cannot listen on {address}:{port} ({exc}); pass an address "
                              "of this machine to --address and a port 1-65535 to --port") \
            from exc
    for family, kind, proto, _, where in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado does
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortUnavailable(
                        f"port {port} on {address} is already in use (another dashboard?); "
                        f"stop that server, or pick another port, e.g. --port {port + 1}") \
                        from exc
                raise PortUnavailable(f"cannot listen on {address}:{port} "
                                      f"({exc.strerror}); choose another --address or --port") \
                    from exc
