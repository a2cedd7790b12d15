"""Networks as `StagedModel`s, created by name: `create_model("vgg8", num_classes=10)`.

Importing this package imports every model module, which registers its
factory; a new model is one new file here plus one import line below.
"""
from . import cifar_resnet, convnet, lstm, resnet, transformer, vgg  # noqa: F401  (registration)
from .registry import UnknownModelError, create_model, list_models, register_model
from .staged import StagedModel, count_parameters, detach_payload, payload_to

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
