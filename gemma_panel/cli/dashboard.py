"""``gemma-panel dashboard``: serve the Panel studio, after checking it can listen."""

from __future__ import annotations

from gemma_panel.ports import check_port_free


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
