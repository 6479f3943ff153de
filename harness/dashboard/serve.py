"""Serving the dashboard: loopback by default, a token required elsewhere.

uvicorn serves the Starlette app with bounds on what one client can hold:
concurrent connections, keep-alive idle time, and a graceful-shutdown
timeout, so a stuck browser never holds the process.
"""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Optional

from harness.kernel import limits
from harness.store.engine import StoreError

DEFAULT_LISTEN = "127.0.0.1:8080"


class ServeError(Exception):
    pass


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ServeError(f"--listen {listen!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: Optional[Path]) -> Optional[str]:
    if token_file is None:
        return None
    try:
        token = Path(token_file).expanduser().read_text().strip()
    except OSError as exc:
        raise ServeError(f"--token-file {token_file}: cannot read ({exc.strerror})") from None
    if not token:
        raise ServeError(f"--token-file {token_file}: the file is empty")
    return token


def make_server(store_url: Optional[str], listen: str = DEFAULT_LISTEN, token_file: Optional[Path] = None):
    """(uvicorn.Server, store), validated; nothing is bound yet."""
    try:
        import uvicorn

        from harness.dashboard.app import create_app
    except ImportError as exc:
        raise ServeError(f"harness serve needs the dashboard extra ({exc.name} is missing): "
                         "pip install 'harness[dashboard]'") from None
    from harness.store.opening import open_store

    host, port = parse_listen(listen)
    token = read_token(token_file)
    if not is_loopback(host) and token is None:
        raise ServeError(f"--listen {listen}: not a loopback address, so the dashboard needs --token-file "
                         "(callers then send Authorization: Bearer TOKEN, or the token as the password)")
    store = open_store(store_url, create=False, readonly=True)
    config = uvicorn.Config(create_app(store, token=token), host=host, port=port, log_level="warning",
                            limit_concurrency=limits.DASHBOARD_MAX_CONNECTIONS,
                            timeout_keep_alive=limits.DASHBOARD_KEEP_ALIVE_S,
                            timeout_graceful_shutdown=limits.DASHBOARD_SHUTDOWN_S, access_log=False, lifespan="off")
    return uvicorn.Server(config), store


def bound_port(server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


def serve(store_url: Optional[str], listen: str = DEFAULT_LISTEN, token_file: Optional[Path] = None,
          port_file: Optional[Path] = None, ready: Optional[threading.Event] = None) -> None:
    """Serve until interrupted. Port 0 picks a free port (written to port_file)."""
    server, store = make_server(store_url, listen, token_file)
    try:
        if port_file is not None or ready is not None:
            watcher = threading.Thread(target=_announce, args=(server, port_file, ready), daemon=True)
            watcher.start()
        try:
            server.run()
        except OSError as exc:
            raise ServeError(f"--listen {listen}: {exc.strerror or exc}") from None
        except SystemExit:  # uvicorn exits 1 when it cannot bind
            raise ServeError(f"--listen {listen}: could not listen there (address in use?)") from None
    finally:
        store.close()


def _announce(server, port_file: Optional[Path], ready: Optional[threading.Event]) -> None:
    import time

    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        if port_file is not None:
            tmp = Path(port_file).with_suffix(".tmp")
            tmp.write_text(str(bound_port(server)))
            tmp.replace(port_file)
        if ready is not None:
            ready.set()


__all__ = ["ServeError", "StoreError", "make_server", "serve"]
