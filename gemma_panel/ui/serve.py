"""Serving the studio without ``panel serve``: ``python -m gemma_panel.ui`` (and the CLI).

Binds to 127.0.0.1 by default: the dashboard starts training processes and reads files on
the server, so it is for the person at this machine (or at the far end of an SSH tunnel).
"""

from __future__ import annotations

import argparse


def serve_dashboard(port: int = 5006, address: str = "127.0.0.1", show: bool = False,
                    threaded: bool = False):
    """Serve ``create_app`` at http://ADDRESS:PORT/studio, one studio per browser session."""
    import panel as pn

    from .app import TITLE, create_app

    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    print(f"gemma-panel: the dashboard is at http://{address}:{port}/studio (Ctrl-C stops it)")
    return pn.serve({"studio": create_app}, port=port, address=address, show=show,
                    title=TITLE, websocket_origin=origins, threaded=threaded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gemma_panel.ui",
                                     description="Serve the gemma_panel dashboard.")
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--address", default="127.0.0.1",
                        help="interface to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--show", action="store_true", help="open it in a browser")
    args = parser.parse_args(argv)
    serve_dashboard(args.port, args.address, args.show)
    return 0
