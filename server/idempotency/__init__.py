"""Idempotency keys: the optional `request_id` of Create, request and approval RPCs."""
