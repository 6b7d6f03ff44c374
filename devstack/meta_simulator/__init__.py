"""A Meta Graph API simulator for the dev stack and the tests; production code never imports it.

`SimulatorServer` serves the Graph endpoints `server.clients.meta` uses (graph_api.py) and a control
API for seeding and fault injection (control.py, or `SimulatorControl` from Python). State lives in
memory. Run it alone with `python -m devstack.meta_simulator --port 8090`.
"""

from devstack.meta_simulator.control_client import SimulatorControl
from devstack.meta_simulator.faults import FaultKind
from devstack.meta_simulator.server import SimulatorServer
from devstack.meta_simulator.state import SimulatorState

__all__ = ["FaultKind", "SimulatorControl", "SimulatorServer", "SimulatorState"]
