"""Networks as `StagedModel`s, created by name: `create_model("vgg8", num_classes=10)`.

Importing this package imports every module in it, and each model module
registers its factories with `@register_model`: a new model is one new file
here, with no other edit (the contract tests pick it up from `list_models()`).
"""
import importlib
import pkgutil

from .registry import UnknownModelError, create_model, list_models, register_model
from .staged import StagedModel, count_parameters, detach_payload, payload_to

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registration side effects

__all__ = [
    "create_model",
    "list_models",
    "register_model",
    "StagedModel",
    "UnknownModelError",
    "detach_payload",
    "payload_to",
    "count_parameters",
]
