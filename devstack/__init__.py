"""Embedded PostgreSQL and Redis, and the `make run` supervisor that starts the dev stack."""
