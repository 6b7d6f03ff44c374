"""What tasks use, built once per worker process and handed to them through taskiq's state."""

from dataclasses import dataclass
from typing import cast

import httpx
from taskiq import Context

from server.clients.meta.client import MetaGraphClient
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure
from server.config import Settings


@dataclass
class WorkerResources:
    settings: Settings
    infrastructure: Infrastructure
    meta: IMetaClient
    _http: httpx.AsyncClient

    @classmethod
    def open(cls, settings: Settings) -> "WorkerResources":
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=settings.meta_max_concurrency * 2),
        )
        # Every running task may hold a connection, and the relay one more.
        pool = max(settings.database_pool_size, settings.worker_concurrency + 1)
        return cls(
            settings=settings,
            infrastructure=Infrastructure.build(settings.model_copy(update={"database_pool_size": pool})),
            meta=MetaGraphClient(http, base_url=settings.meta_graph_url, api_version=settings.meta_graph_api_version),
            _http=http,
        )

    async def close(self) -> None:
        await self._http.aclose()
        await self.infrastructure.close()


def worker_resources(context: Context) -> WorkerResources:
    """The resources of the worker running the task (a taskiq dependency)."""
    return cast(WorkerResources, context.state.resources)
