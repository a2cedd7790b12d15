"""Checks that a cell can run, done for every cell before the first one starts.

Building a model on the `meta` device costs no memory or time, so the real
stage count and the real input shapes are checked, not a table that could drift.
"""
from __future__ import annotations

import functools

import torch

from bench.grid import Cell, GridError
from models.build import build_model

__all__ = ["validate_cell"]


@functools.lru_cache(maxsize=None)
def _model_facts(model: str, dataset: str, kwargs_json: str) -> tuple[int, str, str | None]:
    """(stages, modality, error) of `model` on `dataset`, from a meta-device build and forward."""
    import json

    from data import get_spec

    spec = get_spec(dataset)
    staged = build_model(model, spec, "meta", **json.loads(kwargs_json))
    if staged.modality != spec.modality:
        return staged.num_stages, staged.modality, (
            f"model {model!r} is a {staged.modality} model but dataset {dataset!r} is {spec.modality}"
        )
    dtype = torch.long if spec.modality == "text" else torch.float
    try:
        with torch.no_grad():
            staged(torch.zeros((2, *spec.input_shape), dtype=dtype, device="meta"))
    except Exception as exc:  # noqa: BLE001 - any shape error is reported to the user
        return staged.num_stages, staged.modality, (
            f"model {model!r} does not accept {dataset!r} inputs of shape {tuple(spec.input_shape)} ({exc})"
        )
    return staged.num_stages, staged.modality, None


def validate_cell(cell: Cell, where: str) -> None:
    """Raise GridError naming the key and the valid choices if `cell` cannot run."""
    import json

    from data import UnknownDatasetError, get_spec
    from methods import UnknownMethodError, method_class
    from models import UnknownModelError, list_models

    from bench.execution.devices import DEVICE_KINDS

    label = f"{where}: cell {cell.label}"
    try:
        method_cls = method_class(cell.method)
    except UnknownMethodError as exc:
        raise GridError(f"{label}: method: {exc}") from None
    if cell.model not in list_models():
        raise GridError(f"{label}: model: unknown model {cell.model!r}; choose one of {list_models()}")
    try:
        spec = get_spec(cell.dataset)
    except UnknownDatasetError as exc:
        raise GridError(f"{label}: dataset: {exc}") from None
    for key, value in (("batch_size", cell.batch_size), ("devices", cell.devices)):
        if not isinstance(value, int) or value < 1:
            raise GridError(f"{label}: {key} must be a positive integer, got {value!r}")
    s = cell.settings
    if s.device_kind not in DEVICE_KINDS:
        raise GridError(f"{label}: device_kind {s.device_kind!r} unknown; choose one of {DEVICE_KINDS}")
    if s.steps < 1 or s.warmup_steps < 1:
        raise GridError(f"{label}: steps and warmup_steps must be >= 1 (warm-up is never timed)")
    from data.loading import check_split_options

    try:
        check_split_options(s.val_fraction, s.noise_rate)
    except ValueError as exc:
        raise GridError(f"{label}: {exc}") from None
    if s.glove and spec.modality != "text":
        raise GridError(f"{label}: glove: true needs a text dataset; {cell.dataset!r} is {spec.modality}")
    if not isinstance(s.data_workers, int) or s.data_workers < 0:
        raise GridError(f"{label}: data_workers must be an integer >= 0, got {s.data_workers!r}")
    if not isinstance(s.eval_points, int) or s.eval_points < 1:
        raise GridError(f"{label}: eval_points must be a positive integer, got {s.eval_points!r}")
    if s.eval_points > 1 and s.train_steps < s.eval_points - 1:
        raise GridError(f"{label}: eval_points {s.eval_points} needs train_steps >= {s.eval_points - 1} "
                        "(evaluations are spread over the untimed training steps)")
    if s.views not in (1, 2):
        raise GridError(f"{label}: views must be 1 or 2, got {s.views!r}")
    from methods.losses import LOCAL_LOSSES, SUPCON_VARIANTS

    options = s.options_for(cell.method)
    unknown = sorted(set(options) - set(method_cls.OPTIONS))
    if unknown:
        raise GridError(
            f"{label}: method_options {unknown} not accepted by {cell.method}; valid: {list(method_cls.OPTIONS)}"
        )
    if s.local_loss not in LOCAL_LOSSES:
        raise GridError(f"{label}: local_loss {s.local_loss!r} unknown; choose one of {list(LOCAL_LOSSES)}")
    if s.local_loss == "ntxent" and s.views != 2:
        raise GridError(f"{label}: local_loss ntxent needs the two-view batch; set views: 2")
    if s.supcon_variant not in SUPCON_VARIANTS:
        raise GridError(f"{label}: supcon_variant {s.supcon_variant!r} unknown; choose one of {list(SUPCON_VARIANTS)}")
    samples = cell.batch_size * s.views
    if samples < method_cls.min_batch_size:
        raise GridError(
            f"{label}: batch_size {cell.batch_size} is too small for {cell.method} "
            f"(a contrastive loss needs >= {method_cls.min_batch_size} samples per batch)"
        )
    try:
        stages, _, error = _model_facts(cell.model, cell.dataset, json.dumps(s.model_kwargs, sort_keys=True))
    except UnknownModelError as exc:  # pragma: no cover - checked above
        raise GridError(f"{label}: model: {exc}") from None
    except TypeError as exc:
        raise GridError(f"{label}: model_kwargs: {exc}") from None
    if error:
        raise GridError(f"{label}: {error}")
    if cell.devices > stages:
        raise GridError(
            f"{label}: devices: {cell.model} has {stages} stages and cannot be split over "
            f"{cell.devices} devices; choose devices in {list(range(1, stages + 1))}"
        )
    reason = method_cls.incompatibility(
        modality=spec.modality, batch_size=cell.batch_size, devices=cell.devices,
        options=options,
    )
    if reason:
        raise GridError(f"{label}: {cell.method}: {reason}")
    if isinstance(s.balance, list) and (len(s.balance) != cell.devices or sum(s.balance) != stages):
        raise GridError(
            f"{label}: balance {s.balance} must list {cell.devices} stage counts summing to {stages}"
        )
    if isinstance(s.balance, str) and s.balance not in ("auto", "even"):
        raise GridError(f"{label}: balance {s.balance!r} unknown; use 'auto', 'even' or a list of stage counts")
