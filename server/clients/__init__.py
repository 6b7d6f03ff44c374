"""Clients for external services, each behind a Protocol so services and tasks can be tested without them."""
