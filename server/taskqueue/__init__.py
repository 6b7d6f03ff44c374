"""The task queue every background job runs on: the taskiq broker on Redis streams, the retry policy of
task steps, the task middlewares (metrics, tracing) and the processes' heartbeat. It knows no domain
module; the worker and scheduler processes that use it, and the registry of tasks, are `server.background`."""
