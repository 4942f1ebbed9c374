"""``gemma-panel dashboard``: serve the Panel studio, after checking it can listen."""

from __future__ import annotations

from gemma_panel.errors import UserError


def add_dashboard_command(sub) -> None:
    """Register ``dashboard`` on an argparse subparsers object."""
    dashboard = sub.add_parser("dashboard", help="serve the Panel dashboard (on 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=5006)
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="interface to listen on (default: %(default)s, this machine "
                                "only, no login); any other asks for a password: "
                                "GEMMA_PANEL_PASSWORD, or one printed at start")
    dashboard.add_argument("--data-root", action="append", metavar="FOLDER", dest="data_roots",
                           help="a folder whose files pages may read (repeatable; default: "
                                "the working directory); uploads and the shipped examples "
                                "always are")
    dashboard.add_argument("--show", action="store_true", help="open it in a browser")
    dashboard.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args) -> int:
    check_port_free(args.address, args.port)  # before Panel and the app are imported
    from gemma_panel.ui.serve import serve_dashboard

    serve_dashboard(args.port, args.address, args.show, roots=args.data_roots)
    return 0


class PortUnavailable(UserError):
    """The dashboard cannot listen where it was asked to."""


def check_port_free(address: str, port: int) -> None:
    """Bind ``address:port`` for a moment, as the server will; a sentence if it cannot."""
    import errno
    import socket

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
