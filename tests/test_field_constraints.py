"""The OpenAPI document's constraints (scripts/field_constraints.py, from the protos' comments) say
what the server's request schemas enforce: the same strings pass and fail both."""

import json
import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from server.edge.envoy import OPENAPI_PATH
from server.schema_types import Id, MetaBusinessId, Name100, Name200

# Edges of the rules: surrounding and inner whitespace, control characters, lengths, spellings.
SAMPLES = [
    "",
    " ",
    "a",
    " a ",
    "\ta\n",
    "a b",
    "a\tb",
    "a\x00",
    "\x1ca",
    "a\x7f",
    "\x85a\u3000",
    "x" * 100,
    "x" * 101,
    " " + "x" * 100 + " ",
    "x" * 200,
    "x" * 201,
    "0",
    "12345678901234567890",
    "123456789012345678901",
    " 42 ",
    "4 2",
    "01a251c1-aee6-7290-931b-c8887f2b5112",
    "01A251C1-AEE6-7290-931B-C8887F2B5112",
    "01a251c1aee67290931bc8887f2b5112",
    "{01a251c1-aee6-7290-931b-c8887f2b5112}",
]


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())["components"]["schemas"]
    return loaded


def _documented(schema: dict[str, Any], value: str) -> bool:
    if "anyOf" in schema:
        return any(_documented(option, value) for option in schema["anyOf"] if option.get("type") == "string")
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
        return False
    return "pattern" not in schema or re.search(schema["pattern"], value) is not None


def _enforced(validator: TypeAdapter[Any], value: str) -> bool:
    try:
        validator.validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("message", "field", "server_type"),
    [
        ("Workspace", "name", Name100),
        ("BusinessManager", "name", Name200),
        ("BusinessManager", "meta_business_id", MetaBusinessId),
        ("WorkspaceMember", "user_id", Id),
    ],
)
def test_the_document_and_the_server_agree(schemas: dict[str, Any], message: str, field: str, server_type: Any) -> None:
    schema = schemas[message]["properties"][field]
    validator: TypeAdapter[Any] = TypeAdapter(server_type)
    # An optional id may be empty: not given, which the server never validates as an id.
    samples = [value for value in SAMPLES if value] if "anyOf" in schema else SAMPLES
    disagree = [value for value in samples if _documented(schema, value) != _enforced(validator, value)]
    assert not disagree, f"{message}.{field}: the document and the server disagree on {disagree}"
