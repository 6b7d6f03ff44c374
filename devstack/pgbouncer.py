"""A real PgBouncer (Debian's `pgbouncer` package) in front of a PostgreSQL, for the tests and the
multi-node topology (devstack.cluster): `start_pgbouncer(direct_url, ...)` writes its configuration to a directory of
its own, listens on 127.0.0.1 (or another loopback address) on a free port, in `pool_mode =
transaction`, and passes every database name through to the server behind it.

`make test` installs the package when it is missing (scripts/test_tools.sh); elsewhere a test that
needs it fails with the command to run (`pgbouncer_binary`), never skips.

Run by root, PgBouncer (which refuses to run as root) runs as another user: the owner of the
PostgreSQL socket directory when the server is reached on a unix socket (only that user may enter
it), else `nobody`.
"""

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.engine import URL, make_url

from devstack.embedded import free_port

INSTALL = "apt-get install -y pgbouncer"
START_WITHIN_SECONDS = 30.0


def pgbouncer_binary() -> str:
    """Where `pgbouncer` is (Debian puts it in /usr/sbin, outside a user's PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("pgbouncer", path=search)
    if found is None:
        sudo = "" if os.geteuid() == 0 else "sudo "
        raise RuntimeError(f"PgBouncer is not installed; `make test` installs it, or run: {sudo}{INSTALL}")
    return found


@dataclass
class PgBouncer:
    """PgBouncer on `host:port` in front of the server of `direct_url`."""

    direct_url: URL
    directory: Path
    host: str
    port: int
    run_as: str | None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url_for(self, direct_url: str) -> str:
        """`direct_url` (a database on the server behind PgBouncer) through PgBouncer instead."""
        url = make_url(direct_url)
        query = {name: value for name, value in url.query.items() if name != "host"}
        return url.set(host=self.host, port=self.port, query=query).render_as_string(hide_password=False)

    @property
    def log_path(self) -> Path:
        return self.directory / "pgbouncer.log"

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else "(no log)"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [pgbouncer_binary(), str(self.directory / "pgbouncer.ini")],
            user=self.run_as,
            group=self.run_as,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "stderr.log").open("ab"),
        )
        deadline = time.monotonic() + START_WITHIN_SECONDS
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                stderr = (self.directory / "stderr.log").read_text()[-2000:]
                raise RuntimeError(f"pgbouncer did not start on {self.host}:{self.port}:\n{stderr}\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: immediate shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


def start_pgbouncer(
    direct_url: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    pool_size: int = 20,
    max_client_conn: int = 1000,
) -> PgBouncer:
    """PgBouncer in transaction mode in front of the server of `direct_url` (a SQLAlchemy URL: TCP,
    or a unix socket directory in `?host=`), with trust authentication for its user."""
    url = make_url(direct_url)
    socket_dir = url.query.get("host")
    server_host = socket_dir if isinstance(socket_dir, str) else (url.host or "127.0.0.1")
    run_as = _run_as(server_host)
    directory = Path(tempfile.mkdtemp(prefix="adplane-pgbouncer-"))
    user = url.username or "postgres"
    server = f"host={server_host} port={url.port or 5432} user={user}"
    if url.password:
        server += f" password={url.password}"
    port = port or free_port()
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                # Every database name the client asks for, on the same server.
                f"* = {server}",
                "[pgbouncer]",
                f"listen_addr = {host}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {directory / 'userlist.txt'}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                f"max_client_conn = {max_client_conn}",
                f"logfile = {directory / 'pgbouncer.log'}",
                f"pidfile = {directory / 'pgbouncer.pid'}",
                # A test database is dropped WITH (FORCE) while PgBouncer still holds connections.
                "server_check_delay = 0",
                "",
            ]
        )
    )
    if run_as is not None:
        _hand_over(directory, run_as)
    bouncer = PgBouncer(direct_url=url, directory=directory, host=host, port=port, run_as=run_as)
    try:
        bouncer.start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return bouncer


def _run_as(server_host: str) -> str | None:
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        return pwd.getpwuid(Path(server_host).stat().st_uid).pw_name
    return "nobody"


def _hand_over(directory: Path, user: str) -> None:
    """Let `user` own PgBouncer's directory and walk down to it (tempfile's directories are 0700)."""
    shutil.chown(directory, user, user)
    for path in directory.iterdir():
        shutil.chown(path, user, user)
    for parent in directory.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
