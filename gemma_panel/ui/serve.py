"""Serving the studio without ``panel serve``: ``gemma-panel dashboard`` and its alias.

The dashboard starts training processes and reads files on the server. On 127.0.0.1 (the
default; or at the far end of an SSH tunnel) it is for the person at this machine and has
no login. Bound to any other address it can be reached from other machines, so it asks for
a password first (Panel's basic auth): ``GEMMA_PANEL_PASSWORD``, or one generated and
printed at start. ``studio_page`` also refuses, whoever started the server, to build the
studio for a peer on another machine that has not logged in (``panel serve --address
0.0.0.0`` without ``--basic-auth``). ``/download/<path>`` (``downloads.py``) serves the
run store's exports under the same login.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from pathlib import Path

from gemma_panel.home import home_dir
from gemma_panel.ports import check_port_free

from .downloads import download_patterns
from .server_paths import DATA_ROOTS_ENV, data_roots, recipes_dir
from .uploads import websocket_max_message_bytes

PASSWORD_ENV = "GEMMA_PANEL_PASSWORD"
REFUSED = ("This dashboard answers other machines only after a login. Start it with "
           "`gemma-panel dashboard --address ADDRESS`, which asks for a password, or reach "
           "it through an SSH tunnel to 127.0.0.1.")


def is_loopback(address: str) -> bool:
    """True when every address ``address`` names is this machine's loopback."""
    if not address:
        return False  # "" listens on every interface
    try:
        infos = socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError):
        return False
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not (getattr(ip, "ipv4_mapped", None) or ip).is_loopback:
            return False
    return bool(infos)


def _logged_in(request) -> bool:
    """The request carries a user cookie this server signed (a client cannot forge one)."""
    from panel.config import config
    from tornado.web import decode_signed_value

    cookie, secret = request.cookies.get("user"), config.cookie_secret
    return bool(cookie and secret and decode_signed_value(secret, "user", cookie))


def studio_page():
    """One browser session's page: the studio, or a refusal for a remote peer not logged in."""
    import panel as pn

    from .app import create_app

    context = getattr(pn.state.curdoc, "session_context", None)
    request = getattr(context, "request", None)
    peer = getattr(request, "remote_ip", None) if request is not None else None
    if peer and not is_loopback(peer) and not _logged_in(request):
        return pn.pane.Alert(REFUSED, alert_type="danger")
    app = create_app()
    pn.state.on_session_destroyed(lambda _: app.studio.jobs.close())
    return app


def _origins(address: str, port: int) -> list[str]:
    hosts = {address, "localhost", "127.0.0.1"}
    if address in ("", "0.0.0.0", "::"):  # reached by this machine's names and addresses
        hosts |= {socket.gethostname(), socket.getfqdn()}
        try:
            hosts |= {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None)}
        except socket.gaierror:
            pass
    return sorted(f"{h}:{port}" for h in hosts if h)


def _login(address: str) -> tuple[str | None, str]:
    """The password to ask for (None: no login) and how the start-up line describes it."""
    password = os.environ.get(PASSWORD_ENV) or None
    if password:
        return password, f"log in with any user name and the password in {PASSWORD_ENV}"
    if is_loopback(address):
        return None, "for this machine only, no login"
    password = secrets.token_urlsafe(12)
    return password, (f"reachable from other machines, so it asks for a login: any user "
                      f"name, password {password} (set {PASSWORD_ENV} to choose one; without "
                      "HTTPS it crosses the network in clear text, an SSH tunnel does not)")


def serve_dashboard(port: int = 5006, address: str = "127.0.0.1", show: bool = False,
                    threaded: bool = False, roots: list[str] | None = None):
    """Serve the studio at http://ADDRESS:PORT/studio, one studio per browser session.

    Args:
        roots: the folders pages may read data from (default: the working directory).
    """
    check_port_free(address, port)  # a sentence now, not Tornado's traceback later
    import panel as pn

    from .app import TITLE

    if roots:
        os.environ[DATA_ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve())
                                                     for r in roots)
    password, login = _login(address)
    auth = {"basic_auth": password, "cookie_secret": secrets.token_urlsafe(32)} \
        if password else {}
    print(f"gemma-panel: the dashboard is at http://{address}:{port}/studio, {login} "
          "(Ctrl-C stops it)", flush=True)
    print(f"gemma-panel: pages may read files under {', '.join(map(str, data_roots()))} "
          f"and save recipes in {recipes_dir()}", flush=True)
    return pn.serve({"studio": studio_page}, port=port, address=address, show=show,
                    title=TITLE, websocket_origin=_origins(address, port), threaded=threaded,
                    websocket_max_message_size=websocket_max_message_bytes(),
                    extra_patterns=download_patterns(home_dir() / "runs", password is not None),
                    **auth)

