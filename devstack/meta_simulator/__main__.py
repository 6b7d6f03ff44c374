"""`python -m devstack.meta_simulator --port N`: the simulator until Ctrl-C or SIGTERM."""

import argparse
import signal
import threading
from types import FrameType

from devstack.meta_simulator.server import SimulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.meta_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--businesses", type=int, default=0, help="seed this many businesses (tokens printed)")
    parser.add_argument("--ad-accounts", type=int, default=0, help="seed this many ad accounts across them")
    args = parser.parse_args(argv)

    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with SimulatorServer(host=args.host, port=args.port) as simulator:
        for n in range(args.businesses):
            business = simulator.state.add_business(name=f"Business {n + 1}")
            print(f"business {business.id} token {business.token}", flush=True)
        businesses = list(simulator.state.businesses)
        for n in range(args.ad_accounts if businesses else 0):
            simulator.state.add_ad_account(business_id=businesses[n % len(businesses)], name=f"Account {n + 1}")
        print(f"Meta Graph API simulator listening on {simulator.base_url}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
