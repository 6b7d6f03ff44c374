"""The test suite. Imported before any test module, so before grpc is."""

import os

# A test process forks to start PostgreSQL, pgbouncer and the adplane processes, after it has used grpc.
# grpc's fork handlers then run in the forked child before its exec, and crashed it there now and then
# ("Epoll1Poller ... epoll_wait error: Bad file descriptor", pg_ctl dying of SIGSEGV). Every child here
# execs at once, so it needs none of them; adplane's own processes start theirs with "spawn".
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
