"""Embedded PostgreSQL and Redis: reachable the way the app reaches them, and restartable."""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.embedded import EmbeddedPostgres, free_port, is_port_free, start_postgres, start_redis
from tests.conftest import postgres_data_dir
from tests.waits import wait_until


@pytest.fixture(scope="module")
def postgres() -> Iterator[EmbeddedPostgres]:
    with postgres_data_dir() as pgdata:
        server = start_postgres(pgdata, ephemeral=True)
        yield server
        server.stop()


async def _current_database(url: str) -> str:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return str((await connection.execute(text("SELECT current_database()"))).scalar_one())
    finally:
        await engine.dispose()


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.mark.asyncio
async def test_created_database_is_reachable_with_sqlalchemy_and_asyncpg(postgres: EmbeddedPostgres) -> None:
    url = postgres.create_database("devstack_check")

    assert url.startswith("postgresql+asyncpg://")
    assert await _current_database(url) == "devstack_check"
    assert await _current_database(postgres.url) == "postgres"


def test_create_database_is_idempotent(postgres: EmbeddedPostgres) -> None:
    assert postgres.create_database("devstack_twice") == postgres.create_database("devstack_twice")


def test_create_database_refuses_names_that_need_quoting(postgres: EmbeddedPostgres) -> None:
    with pytest.raises(ValueError, match="database name"):
        postgres.create_database('x"; DROP DATABASE postgres; --')


def test_ephemeral_stop_deletes_the_data_directory(postgres_dir: Path) -> None:
    server = start_postgres(postgres_dir, ephemeral=True)
    server.stop()

    assert not postgres_dir.exists()


@pytest.mark.asyncio
async def test_persistent_data_survives_a_restart(postgres_dir: Path) -> None:
    server = start_postgres(postgres_dir, ephemeral=False)
    url = server.create_database("kept")
    server.stop()
    assert (postgres_dir / "PG_VERSION").exists()

    server.start()
    try:
        assert await _current_database(url) == "kept"
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_server_left_behind_by_a_dead_supervisor_is_adopted(postgres_dir: Path) -> None:
    first = start_postgres(postgres_dir, ephemeral=False)
    pid = _postmaster_pid(first.pgdata)

    # A new handle, as after `kill -9` of the supervisor: the server is still running.
    second = start_postgres(postgres_dir, ephemeral=False)
    try:
        assert _postmaster_pid(second.pgdata) == pid
        assert await _current_database(second.url) == "postgres"
    finally:
        second.stop()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="tells processes apart through /proc")
def test_stale_pid_file_whose_pid_was_reused_does_not_block_start(postgres_dir: Path) -> None:
    server = start_postgres(postgres_dir, ephemeral=False)
    os.kill(_postmaster_pid(server.pgdata), signal.SIGKILL)
    _wait_until_no_process_runs_in(server.pgdata)  # the backends exit once the postmaster is gone
    # After a reboot or in a new container the recorded pid can belong to an unrelated process of
    # the server's user, which postgres itself would take for a running server.
    with subprocess.Popen(["sleep", "60"], user=server.system_user) as stranger:
        pid_file = server.pgdata / "postmaster.pid"
        pid_file.write_text("\n".join([str(stranger.pid), *pid_file.read_text().split("\n")[1:]]))
        try:
            server.start()
            assert server.create_database("after_the_crash").endswith("/after_the_crash?host=" + str(server.socket_dir))
        finally:
            stranger.kill()
            server.stop()


def _wait_until_no_process_runs_in(directory: Path) -> None:
    def running() -> bool:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.readlink(entry / "cwd") == str(directory):
                    return True
            except OSError:
                continue
        return False

    wait_until(lambda: not running(), within=10, what=f"every process in {directory} gone")


def _redis_command(port: int, *arguments: str) -> bytes:
    """One RESP command over a plain socket; returns the first line of the reply."""
    request = f"*{len(arguments)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in arguments)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(request.encode())
        return connection.makefile("rb").readline().rstrip(b"\r\n")


def test_redis_stops_and_starts_again_on_the_same_port(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis", ephemeral=True)
    try:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert _redis_command(redis.port, "PING") == b"+PONG"

        redis.stop()
        with pytest.raises(ConnectionRefusedError):
            _redis_command(redis.port, "PING")

        redis.start()
        assert _redis_command(redis.port, "PING") == b"+PONG"
    finally:
        redis.stop()


def test_persistent_redis_keeps_data_across_a_restart(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis", ephemeral=False)
    try:
        assert _redis_command(redis.port, "SET", "key", "kept") == b"+OK"
        redis.stop()
        redis.start()
        assert _redis_command(redis.port, "GET", "key") == b"$4"  # a 4-byte bulk string follows
    finally:
        redis.stop()


def test_free_port_is_free() -> None:
    port = free_port()

    assert is_port_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not is_port_free(port)
