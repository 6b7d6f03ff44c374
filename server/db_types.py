"""Column types shared by models."""

from enum import StrEnum

from sqlalchemy import Enum


def pg_enum[E: StrEnum](enum: type[E], name: str) -> Enum:
    """A PostgreSQL enum storing the members' snake_case values (not their names)."""
    return Enum(enum, name=name, values_callable=lambda members: [member.value for member in members])
