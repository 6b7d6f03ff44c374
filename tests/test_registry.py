"""Every outbox topic the code writes has a task, and every task is registered with taskiq."""

import importlib
import pkgutil

import server
from server.background.registry import EVENT_TOPICS, TASKS, TOPICS, register_tasks
from server.config import Settings
from server.taskqueue.broker import create_broker


def _topics_written() -> set[str]:
    """Module constants named *_TOPIC anywhere in the server package."""
    topics: set[str] = set()
    for module_info in pkgutil.walk_packages(server.__path__, prefix="server."):
        module = importlib.import_module(module_info.name)
        topics |= {value for name, value in vars(module).items() if name.endswith("_TOPIC") and isinstance(value, str)}
    return topics


def test_every_outbox_topic_has_a_task() -> None:
    written = _topics_written()
    assert "request.approved" in written
    assert "request.changed" in written
    assert written <= set(TOPICS) | EVENT_TOPICS, f"no task for {sorted(written - set(TOPICS) - EVENT_TOPICS)}"
    assert not EVENT_TOPICS & set(TOPICS)  # an event is not work for a task as well


def test_tasks_register_with_their_schedules(redis_url: str) -> None:
    settings = Settings(_env_file=None, redis_url=redis_url)
    broker = create_broker(settings)
    register_tasks(broker, settings)
    registered = broker.get_all_tasks()
    assert {spec.name for spec in TASKS} == set(registered)
    scheduled = {name for name, task in registered.items() if task.labels.get("schedule")}
    assert scheduled == {spec.name for spec in TASKS if spec.schedule is not None}
    assert registered["accounts.sync"].labels["schedule"][0]["cron"] == settings.sync_accounts_cron
