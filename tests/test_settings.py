"""The settings schema's choices are the ones the methods and data modules accept.

The schema repeats them as literals so that loading a grid never imports torch;
this test is what keeps the two lists from drifting apart.
"""
import typing

from bench.execution.devices import DEVICE_KINDS
from bench.grid.settings import CellSettings
from data.loading import AUGMENTS
from data.text_layout import IMDB_STOP_WORDS, PADDING_SIDES, PADDINGS
from methods.losses import LOCAL_LOSSES, SUPCON_VARIANTS
from methods.projectors import PROJECTOR_TYPES
from models.reducers import EMBEDDING_FEATURES


def _choices(field: str) -> set:
    annotation = CellSettings.model_fields[field].annotation
    values: set = set()
    for arg in typing.get_args(annotation) or (annotation,):
        values |= set(typing.get_args(arg)) if typing.get_origin(arg) is typing.Literal else set()
    if typing.get_origin(annotation) is typing.Literal:
        values |= set(typing.get_args(annotation))
    return values - {None}


def test_schema_choices_equal_what_the_code_accepts():
    assert _choices("local_loss") == set(LOCAL_LOSSES)
    assert _choices("supcon_variant") == set(SUPCON_VARIANTS)
    assert _choices("projector") == set(PROJECTOR_TYPES)
    assert _choices("augment") == set(AUGMENTS)
    assert _choices("device_kind") == set(DEVICE_KINDS)
    assert _choices("padding") == set(PADDINGS)
    assert _choices("padding_side") == set(PADDING_SIDES)
    assert _choices("imdb_stop_words") == set(IMDB_STOP_WORDS)
    assert _choices("embedding_feature") == set(EMBEDDING_FEATURES)


def test_defaults_are_valid_and_round_trip():
    settings = CellSettings()
    assert CellSettings.model_validate(settings.as_dict()) == settings
