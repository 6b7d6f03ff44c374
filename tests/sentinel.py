"""Redis through Sentinel in tests: a primary, a replica and three sentinels on loopback
(`devstack.sentinel.SentinelGroup`, which `make cluster`-like topologies use too), and the settings
or environment that point the platform's processes at them.

    @pytest.fixture
    def group(tmp_path: Path) -> Iterator[SentinelGroup]:
        with SentinelGroup(tmp_path / "sentinel") as group:
            yield group

    start_server(settings, tmp_path, **sentinel_env(group))   # a process through the sentinels
    group.kill_primary(); seconds = group.wait_for_new_primary()
"""

from devstack.sentinel import SentinelGroup
from server.config import Settings

__all__ = ["SentinelGroup", "sentinel_env", "sentinel_settings"]


def sentinel_env(group: SentinelGroup) -> dict[str, str]:
    """Environment variables of a process that reaches Redis through `group`'s sentinels only."""
    return {"REDIS_URL": "", "REDIS_SENTINELS": group.sentinels, "REDIS_SENTINEL_SERVICE": group.service}


def sentinel_settings(settings: Settings, group: SentinelGroup) -> Settings:
    """`settings` reaching Redis through `group`'s sentinels only."""
    return settings.model_copy(
        update={"redis_url": "", "redis_sentinels": group.sentinels, "redis_sentinel_service": group.service}
    )
