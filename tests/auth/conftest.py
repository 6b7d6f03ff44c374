"""Fixtures of the authentication tests."""

import dataclasses

import pytest

from server.composition import Infrastructure
from tests.callers import CHEAP_PASSWORDS


@pytest.fixture
def fast_infrastructure(infrastructure: Infrastructure) -> Infrastructure:
    """The shared infrastructure (same database, Redis and login throttle) with a cheap argon2id
    hasher for the users it creates.

    A production-cost hash takes ~0.1 s, longer than the test LOGIN_FIRST_DELAY_SECONDS (0.05 s):
    a failure's delay would be over before the next attempt. With cheap hashes the throttle's
    delays show, and tests that fail many sign-ins in a row stay quick. The engine is shared, so
    this copy is never closed.
    """
    return dataclasses.replace(infrastructure, passwords=CHEAP_PASSWORDS)
