"""Background work: the taskiq broker, the outbox relay, the worker and the scheduler."""
