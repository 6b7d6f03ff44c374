"""The composition root registers a module for every type of approved request."""

from typing import cast

from server.business_managers.meta_steps import MetaSteps
from server.composition import request_handlers
from server.requests.models import RequestType


def test_every_request_type_has_the_module_that_carries_it_out() -> None:
    handlers = request_handlers(cast(MetaSteps, object()))
    assert set(handlers) == set(RequestType)
