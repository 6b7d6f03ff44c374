"""JSON Schema constraints from the constraints a field's comment documents (scripts/openapi.py).

The protos document each field's constraints in its comment, in a few fixed phrasings, and the
server's request schemas enforce them; this turns the phrasings into the OpenAPI document's
keywords, so the document is as strict as the server (schemathesis checks both directions):

  "(a UUID)"                            a lowercase, hyphenated UUID (`format: uuid` and its pattern)
  "1 to 100 characters"                 minLength / maxLength ("at most 128 characters": maxLength)
  "... after trimming"                  the bounds apply once surrounding whitespace is removed
  "no control characters", "printable"  no C0/C1 control characters (non-ASCII: printable only)
  "1 to 20 digits"                      that many ASCII digits
  "a valid address"                     `format: email`
  "negative is INVALID_ARGUMENT"        minimum 0
  "One to 50 distinct ..." (a list)     minItems / maxItems / uniqueItems; "(UUIDs)": each a UUID
  "`name` and/or `status`" on a FieldMask   the paths it may name (and "non-empty")
  "(see Message.field)"                 the constraints of that field

A REQUIRED string is non-empty. An optional id may also be empty: proto3 cannot tell an unset string
from an empty one, and the server reads both as "not given" (a filter that is not set); an optional
field documented as "1 to 200 characters" is refused empty, as its comment says.
"""

import re
from typing import Any

Schema = dict[str, Any]

# The lowercase, hyphenated spelling, the only one the server accepts (server/schema_types.py).
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# What trimming removes: Unicode White_Space, as pydantic's strip_whitespace (Rust's trim) does.
_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Control characters (Unicode Cc). The server refuses every non-printable character; outside ASCII
# that is more than a pattern can say without a Unicode database, and the description says it.
_CONTROL = r"\x00-\x1f\x7f-\x9f"

_SEE = re.compile(r"\(see ([A-Z]\w*)\.(\w+)\)")
_UUID = re.compile(r"\ba UUID\b")
_RANGE = re.compile(r"\b(\d+) to (\d+) (printable )?characters\b")
_AT_MOST = re.compile(r"\bat most (\d+) (printable )?characters\b")
_DIGITS = re.compile(r"\b(\d+) to (\d+) digits\b")
_NON_NEGATIVE = re.compile(r"\bnegative(?: values)? (?:is|are) INVALID_ARGUMENT\b")
_NAMES = re.compile(r"`([a-z_][a-z0-9_]*)`")
_ITEMS = re.compile(r"\b(one|two|three|four|five|\d+) to (one|two|three|four|five|\d+) distinct\b", re.IGNORECASE)
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def resolve(comment: str, lookup: Any) -> str:
    """The comment with "(see Message.field)" replaced by that field's own comment."""
    seen: set[str] = set()
    while (match := _SEE.search(comment)) and match.group(0) not in seen:
        seen.add(match.group(0))
        comment = comment.replace(match.group(0), f"({lookup(match.group(1), match.group(2))})")
    return comment


def string_constraints(comment: str, *, required: bool) -> Schema:
    """Keywords for a string field with this (resolved) comment."""
    schema: Schema = {}
    if _UUID.search(comment):
        uuid = {"format": "uuid", "pattern": UUID_PATTERN}
        return uuid if required else empty_or(uuid)
    if digits := _DIGITS.search(comment):
        low, high = digits.groups()
        space = f"[{_SPACE}]*" if "after trimming" in comment else ""
        schema = {"pattern": f"^{space}[0-9]{{{low},{high}}}{space}$"}
    elif "a valid address" in comment:
        schema = {"format": "email"}
        if limit := _AT_MOST.search(comment):
            schema["maxLength"] = int(limit.group(1))
    elif length := _RANGE.search(comment):
        schema = _text(int(length.group(1)), int(length.group(2)), comment, printable=bool(length.group(3)))
    elif limit := _AT_MOST.search(comment):
        schema = _text(0, int(limit.group(1)), comment, printable=bool(limit.group(2)))
    if required and not schema:
        schema = {"minLength": 1}
    return schema


def _text(low: int, high: int, comment: str, *, printable: bool) -> Schema:
    printable = printable or "no control characters" in comment
    char = f"[^{_CONTROL}]" if printable else "[\\s\\S]"
    if "after trimming" not in comment:
        return {"minLength": low, "maxLength": high} | ({"pattern": f"^{char}*$"} if printable else {})
    # low..high characters between the first and the last that trimming keeps.
    edge = f"[^{_SPACE}{_CONTROL}]" if printable else f"[^{_SPACE}]"
    if high == 0:
        core = ""
    elif high == 1:
        core = edge
    else:
        core = f"{edge}(?:{char}{{0,{high - 2}}}{edge})?"
    body = core if low >= 1 else f"(?:{core})?"
    return {"pattern": f"^[{_SPACE}]*{body}[{_SPACE}]*$"}


def array_constraints(comment: str) -> tuple[Schema, Schema]:
    """Keywords for a repeated field with this comment, and for each of its items."""
    array: Schema = {}
    if items := _ITEMS.search(comment):
        low, high = (int(n) if n.isdigit() else _NUMBERS[n.lower()] for n in items.groups())
        array = {"minItems": low, "maxItems": high, "uniqueItems": True}
    item: Schema = {"format": "uuid", "pattern": UUID_PATTERN} if "(UUIDs" in comment else {}
    return array, item


def minimum(comment: str) -> Schema:
    """Keywords for an integer field with this (resolved) comment."""
    return {"minimum": 0} if _NON_NEGATIVE.search(comment) else {}


def field_mask(comment: str) -> Schema:
    """A FieldMask naming only the paths its comment lists (`name`, `status`), at least one."""
    names = sorted(set(_NAMES.findall(comment)))
    if not names:
        return {}
    path = "(?:" + "|".join(names) + ")"
    return {"pattern": f"^{path}(?:,{path})*$", "description": f"Comma-separated, from: {', '.join(names)}."}


def empty_or(schema: Schema) -> Schema:
    """An optional field: empty (not given), or a value that meets `schema`."""
    return {"anyOf": [{"type": "string", "maxLength": 0}, {"type": "string", **schema}]}
