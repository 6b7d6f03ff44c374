"""Task metrics (`server.metrics`): runs by task and outcome, their duration, those under way.

taskiq ships a PrometheusMiddleware, but with unprefixed names (`received_tasks`, `execution_time`),
a fixed multiprocess directory it never cleans, and an endpoint of its own; this one records into
adplane's metrics, served with the rest on WORKER_METRICS_PORT.
"""

from typing import Any

from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

from server.metrics import TASK_DURATION, TASKS, TASKS_IN_PROGRESS


class TaskMetrics(TaskiqMiddleware):
    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        TASKS_IN_PROGRESS.labels(message.task_name).inc()
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        TASKS_IN_PROGRESS.labels(message.task_name).dec()
        TASKS.labels(message.task_name, "error" if result.is_err else "success").inc()
        TASK_DURATION.labels(message.task_name).observe(result.execution_time)
