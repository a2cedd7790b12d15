"""Methods found by name, like timm's model registry: no if/elif chains."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from .base import Method

__all__ = ["register_method", "method_class", "list_methods", "UnknownMethodError"]

_METHODS: dict[str, type[Method]] = {}
T = TypeVar("T", bound="type[Method]")


class UnknownMethodError(ValueError):
    """Raised for a method name no module registered."""


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: make a `Method` subclass available as `name`."""

    def decorate(cls: T) -> T:
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        setattr(cls, "name", name)  # a ClassVar set on the class itself
        if "display_name" not in vars(cls):  # not inherited: SCPL + GPipe is no "SCPL"
            setattr(cls, "display_name", name)
        _METHODS[name] = cls
        return cls

    return decorate


def method_class(name: str) -> type[Method]:
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown method {name!r}; choose one of {sorted(_METHODS)}"
        ) from None


def list_methods() -> list[str]:
    return sorted(_METHODS)
