"""A real PgBouncer in transaction mode, started by the test on a free port.

PgBouncer refuses to run as root; as root we pass ``-u nobody`` (it drops privileges
after reading its files, which therefore live in a world-readable directory).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from sqlalchemy.engine import make_url

from support import ci

BOUND_SECONDS = 30.0


def binary_or_skip() -> str:
    """The pgbouncer binary; a skip with the reason on a laptop, a failure in CI."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if not found:
        ci.missing_tool("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running(server_url: str, *, pool_size: int = 4) -> Iterator[int]:
    """Start PgBouncer (pool_mode=transaction) in front of ``server_url``; yield its port."""
    binary = binary_or_skip()
    url = make_url(server_url)
    host = url.query.get("host") or url.host or "127.0.0.1"
    if isinstance(host, tuple):
        host = host[0]
    port = _free_port()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="kairo-pgbouncer-"))
    workdir.chmod(0o755)
    users = workdir / "users.txt"
    users.write_text(f'"{url.username or "postgres"}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={host} port={url.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {users}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 500",
                "server_reset_query =",
                "",
            ]
        )
    )
    for path in (users, ini):
        path.chmod(0o644)
    argv = [binary, str(ini)]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "nobody"]
    log_path = workdir / "pgbouncer.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BOUND_SECONDS
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def via(port: int, database_url: str) -> str:
    """``database_url`` pointed at the pooler on ``port``."""
    url = make_url(database_url)
    query = {k: v for k, v in url.query.items() if k != "host"}
    return url.set(host="127.0.0.1", port=port, query=query).render_as_string(hide_password=False)
