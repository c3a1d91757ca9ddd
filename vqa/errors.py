"""Errors that name the file, record and field at fault (core module)."""
from __future__ import annotations

from dataclasses import dataclass


# why a default rule folder or shipped checkpoint can be missing: they live in the source
# tree (rules/, data/checkpoints/), which a non-editable install does not carry
SOURCE_TREE_HINT = ("the shipped rules and models are read from the source checkout (rules/, data/checkpoints/) "
                    "and are not part of a non-editable install: install with `pip install -e .` from a clone")


class VQAError(Exception):
    """Base class of the errors the CLI reports without a traceback."""


@dataclass
class Problem:
    """One defect in user data: where it is and what was expected."""

    file: str | None
    record: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.field:
            parts.append(f"field '{self.field}'")
        where = ": ".join(parts)
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict:
        return {"file": self.file, "record": self.record, "field": self.field, "message": self.message}


class DataError(VQAError, ValueError):
    """Malformed user data. `str()` reads "FILE: record R: field 'F': message"."""

    def __init__(self, message: str, *, file=None, record=None, field=None):
        self.problem = Problem(str(file) if file is not None else None,
                               None if record is None else str(record), field, message)
        super().__init__(str(self.problem))

    def located(self, *, file=None, record=None, field=None) -> "DataError":
        """The same error with missing location parts filled in."""
        p = self.problem
        return DataError(
            p.message,
            file=p.file or file,
            record=p.record if p.record is not None else record,
            field=_join_fields(field, p.field),
        )


def _join_fields(outer: str | None, inner: str | None) -> str | None:
    if outer and inner:
        return f"{outer}.{inner}" if not inner.startswith("[") else f"{outer}{inner}"
    return outer or inner


def require(record: dict, key: str, types, *, file=None, record_id=None, what=None):
    """`record[key]`, checked to be an instance of `types`, or a DataError naming it."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", file=file, record=record_id)
    if key not in record:
        raise DataError(f"missing (expected {what or _type_names(types)})", file=file, record=record_id, field=key)
    value = record[key]
    if types is float:
        types = (int, float)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise DataError(
            f"expected {what or _type_names(types)}, got {type(value).__name__} {_short(value)}",
            file=file, record=record_id, field=key,
        )
    return value


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _type_names(types) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "a boolean", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in _as_tuple(types))


def _short(value, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
