"""What the `make run` supervisor watches: PostgreSQL and Redis answering, Envoy routing."""

from pathlib import Path

from devstack.embedded import free_port, start_redis
from devstack.probes import Probe, postgres_reachable, redis_reachable, routes_to_serving_server


def test_redis_going_away_and_coming_back_is_reported_once_each(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis", ephemeral=True)
    try:
        probe = Probe("Redis", redis_reachable(redis.url))
        assert probe.check() is None
        redis.stop()
        went = probe.check()
        assert went is not None
        assert "Redis is not answering" in went
        assert probe.check() is None  # said once
        redis.start()
        came = probe.check()
        assert came is not None
        assert "Redis is answering again" in came
    finally:
        redis.stop()


def test_postgres_is_reachable_on_its_unix_socket_and_not_where_there_is_none(
    postgres_server_url: str, tmp_path: Path
) -> None:
    assert postgres_reachable(postgres_server_url)()
    assert not postgres_reachable(f"postgresql+asyncpg://postgres@/adplane?host={tmp_path}")()
    assert not postgres_reachable(f"postgresql://postgres@127.0.0.1:{free_port()}/adplane")()


def test_nothing_listening_is_not_a_serving_server() -> None:
    assert not routes_to_serving_server(free_port(), timeout=0.5)
