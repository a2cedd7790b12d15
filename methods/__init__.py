"""Training methods behind one adapter (`Method`), found by name.

Importing this package imports every module in it, and each method module
registers itself with `@register_method`: a new method is one new file here,
with no other edit (the contract tests pick it up from `list_methods()`).

A method kept outside this package (an experiment, the contract test's
throwaway method) registers the same way from its own module, named in the
environment: `SCPLBENCH_METHOD_MODULES=pkg.mod,other.mod` (importable, e.g.
through PYTHONPATH).  The variable is read at import, so the cell processes a
runner starts, which inherit the environment, know those methods too.
"""
import importlib
import os
import pkgutil

from .base import DecoupledMethod, Execution, Method, MethodConfig, MethodOptions, StageStep, make_optimizer
from .registry import UnknownMethodError, list_methods, method_class, register_method

METHOD_MODULES_ENV = "SCPLBENCH_METHOD_MODULES"

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registration side effects


def import_method_modules() -> list[str]:
    """Import the modules `SCPLBENCH_METHOD_MODULES` names (each registers its methods); their names.

    Importing is idempotent, so calling this again after setting the variable
    registers only what is new.
    """
    names = [name.strip() for name in os.environ.get(METHOD_MODULES_ENV, "").split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"{METHOD_MODULES_ENV} names {name!r}, which cannot be imported ({exc}); "
                              "is its folder on PYTHONPATH?") from exc
    return names


import_method_modules()


def create_method(name: str, model, config: MethodConfig | None = None) -> Method:
    """Instantiate method `name` around a `StagedModel`."""
    return method_class(name)(model, config or MethodConfig())


__all__ = [
    "Method", "DecoupledMethod", "Execution", "MethodConfig", "MethodOptions", "StageStep", "make_optimizer",
    "create_method", "import_method_modules", "METHOD_MODULES_ENV",
    "UnknownMethodError", "list_methods", "method_class", "register_method",
]
