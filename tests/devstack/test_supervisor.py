"""`make run` runs two server processes unless GRPC_WORKERS says otherwise."""

from devstack.supervisor import DEV_GRPC_WORKERS, _server_processes
from server.config import Settings


def test_the_dev_stack_runs_several_server_processes_by_default() -> None:
    env: dict[str, str] = {}
    _server_processes(Settings(_env_file=None), env)
    assert env == {"GRPC_WORKERS": str(DEV_GRPC_WORKERS)}
    assert DEV_GRPC_WORKERS >= 2


def test_a_grpc_workers_setting_wins() -> None:
    env = {"GRPC_WORKERS": "1"}
    _server_processes(Settings(_env_file=None, grpc_workers=1), env)
    assert env == {"GRPC_WORKERS": "1"}
