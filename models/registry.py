"""Models by name: `@register_model` on a factory, `create_model("vgg8", num_classes=10)`.

Why a registry (as in timm): the grid names models as strings, and adding a
model is one new file in `models/` (the package imports every module in it), so there is no if/elif chain from names to
classes anywhere.  Every factory returns a `StagedModel`.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from .staged import StagedModel

__all__ = ["UnknownModelError", "register_model", "create_model", "list_models", "model_accepts"]

ModelFactory = Callable[..., StagedModel]
F = TypeVar("F", bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


class UnknownModelError(ValueError):
    """A model name nobody registered; the message lists the names that exist."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.choices = list_models()
        super().__init__(f"unknown model {name!r}; choose one of {self.choices}")


def register_model(fn: F) -> F:
    """Register a factory under its function name (e.g. `def vgg8(num_classes, ...)` -> "vgg8")."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice ({_MODELS[name].__module__} and {fn.__module__})")
    _MODELS[name] = fn
    return fn


def create_model(name: str, num_classes: int, **kwargs) -> StagedModel:
    """Build model `name` with a `num_classes`-way head; `kwargs` go to its factory.

    A misspelt keyword raises the factory's own TypeError, so a wrong
    `model_kwargs` in a grid fails loudly instead of being ignored.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise UnknownModelError(name) from None
    return factory(num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def model_accepts(name: str, keyword: str) -> bool:
    """Whether model `name`'s factory takes `keyword` (e.g. only text models take `vocab_size`)."""
    import inspect

    try:
        factory = _MODELS[name]
    except KeyError:
        raise UnknownModelError(name) from None
    params = inspect.signature(factory).parameters
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
