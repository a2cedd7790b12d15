"""Training methods behind one adapter (`Method`), found by name.

Importing this package imports every module in it, and each method module
registers itself with `@register_method`: a new method is one new file here,
with no other edit (the contract tests pick it up from `list_methods()`).
"""
import importlib
import pkgutil

from .base import DecoupledMethod, Execution, Method, MethodConfig, MethodOptions, StageStep, make_optimizer
from .registry import UnknownMethodError, list_methods, method_class, register_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registration side effects


def create_method(name: str, model, config: MethodConfig | None = None) -> Method:
    """Instantiate method `name` around a `StagedModel`."""
    return method_class(name)(model, config or MethodConfig())


__all__ = [
    "Method", "DecoupledMethod", "Execution", "MethodConfig", "MethodOptions", "StageStep", "make_optimizer",
    "create_method",
    "UnknownMethodError", "list_methods", "method_class", "register_method",
]
