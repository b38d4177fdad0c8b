"""A real nginx in front of the console, as an operator who adds TLS would put it.

Its ``proxy_pass http://127.0.0.1:PORT`` keeps nginx's default ``Host: 127.0.0.1:PORT``
(what opened the old console to anyone) and adds ``X-Forwarded-For`` and
``X-Forwarded-Proto``. Debian's ``nginx-light`` (``.ci/run`` installs it); without it the
tests skip and say why, and with CI=true they fail instead.
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

from support import ci

BOUND_SECONDS = 30.0

CONFIG = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def binary_or_skip() -> str:
    """The nginx binary; a skip with the reason on a laptop, a failure in CI."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(p, os.X_OK)), None
    )
    if not found:
        ci.missing_tool(
            "nginx is not installed (Debian: apt-get install nginx-light; .ci/run does it)"
        )
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
def proxy_to(upstream_port: int) -> Iterator[str]:
    """Run nginx in front of ``127.0.0.1:upstream_port``; yield its base URL."""
    binary = binary_or_skip()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="kairo-nginx-") as raw:
        folder = pathlib.Path(raw)
        # As root, nginx's workers would drop to "nobody", which cannot use our folder.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = folder / "nginx.conf"
        conf.write_text(CONFIG.format(user=user, dir=folder, port=port, upstream=upstream_port))
        proc = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + BOUND_SECONDS
            while not _answers(port):
                if proc.poll() is not None:
                    raise AssertionError(f"nginx exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    raise AssertionError("nginx did not listen within 30 s")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=5)
