"""Stored rows are typed records: built from columns by one function that refuses mistakes.

A cell's phases each hand back their measurements as a mapping of column to
value (`columns()`).  Filling a dataclass by `setattr` of those keys dropped a
misspelled column without a word, and a column written by two phases kept
whichever came last.  `from_columns` is the one way rows are built from such
mappings: an unknown column (with the closest real name), a column given by
two mappings, and a value of the wrong type are errors where the row is
written.  The Arrow schema of a row type is derived from the same
annotations, so a column's type is declared once.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import typing
from typing import Any, Mapping, TypeVar

import pyarrow as pa

__all__ = ["ColumnError", "from_columns", "arrow_schema"]

R = TypeVar("R")

_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


class ColumnError(ValueError):
    """A row built with a column its type does not have, a column given twice, or a value of the wrong type."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}


def _accepts(hint: Any, value: Any) -> bool:
    """Whether `value` fits the annotation: Optional, list[X] and the four scalars of a parquet row."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_accepts(typing.get_args(hint)[0], v) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # numpy integers count (numbers.Integral); a bool in a count column is a mistake
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_columns(cls: type[R], *parts: Mapping[str, Any]) -> R:
    """A `cls` row from the union of `parts`; raises ColumnError listing every wrong column at once."""
    hints = _hints(typing.cast(type, cls))
    merged: dict[str, Any] = {}
    problems = []
    for part in parts:
        for name, value in part.items():
            if name not in hints:
                close = difflib.get_close_matches(name, hints, n=1)
                problems.append(f"{name!r} is not a column" + (f" (did you mean {close[0]!r}?)" if close else ""))
            elif name in merged:
                problems.append(f"{name!r} is given twice (each column is written in one place)")
            elif not _accepts(hints[name], value):
                problems.append(f"{name!r} = {value!r} is not a {str(hints[name]).replace('typing.', '')}")
            merged[name] = value
    if problems:
        raise ColumnError(f"{cls.__name__}: " + "; ".join(problems))
    return cls(**merged)


def _arrow_type(hint: Any) -> pa.DataType:
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return pa.list_(_SCALARS[typing.get_args(hint)[0]])
    return _SCALARS[hint]


def arrow_schema(cls: type) -> pa.Schema:
    """The parquet schema of a row type: one column per field, in field order, typed by its annotation."""
    hints = _hints(cls)
    return pa.schema([pa.field(f.name, _arrow_type(hints[f.name])) for f in dataclasses.fields(cls)])
