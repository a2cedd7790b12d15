"""Training methods behind one adapter (`Method`), found by name.

Importing this package registers every method module.
"""
from .base import DecoupledMethod, Method, MethodConfig, StageStep, make_optimizer
from .registry import UnknownMethodError, list_methods, method_class, register_method
from . import al, bp, contsup, dascpl, ddp, early_exit, gpipe, gpipe_dist, scpl, scpl_gpipe  # noqa: F401  (registration side effects)


def create_method(name: str, model, config: MethodConfig | None = None) -> Method:
    """Instantiate method `name` around a `StagedModel`."""
    return method_class(name)(model, config or MethodConfig())


__all__ = [
    "Method", "MethodConfig", "StageStep", "make_optimizer", "create_method",
    "UnknownMethodError", "list_methods", "method_class", "register_method",
]
