"""The transactional outbox: background work recorded in the same transaction as its cause.

A relay publishes pending messages to the task broker; nothing is enqueued from inside a
transaction, and nothing is lost while the broker is down.
"""
