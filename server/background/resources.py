"""What the tasks of a worker process use, built once per process: the composition root's
infrastructure, the Graph API client, and the Meta toolkit and request work built on them."""

import asyncio
from dataclasses import dataclass
from typing import cast

import httpx
from taskiq import Context

from server.business_managers.meta_steps import MetaSteps
from server.clients.meta.client import MetaGraphClient
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.requests.work import RequestWork
from server.taskqueue.retry import Sleep


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

    def steps(self, *, sleep: Sleep = asyncio.sleep) -> MetaSteps:
        return self.infrastructure.meta_steps(self.meta, self.settings, sleep=sleep)

    def request_work(self, *, sleep: Sleep = asyncio.sleep) -> RequestWork[UnitOfWork]:
        return self.infrastructure.request_work(self.meta, self.settings, sleep=sleep)

    async def close(self) -> None:
        await self._http.aclose()
        await self.infrastructure.close()


def worker_resources(context: Context) -> WorkerResources:
    """The resources of the worker running the task (set on the broker's state by `adplane worker`)."""
    return cast(WorkerResources, context.state.resources)
