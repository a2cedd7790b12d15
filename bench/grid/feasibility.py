"""Whether each cell can run, checked for every cell before the first one starts.

The settings schema (`settings.py`) has already checked every value's type,
range and choice; what is left needs the registries and the models: names
that exist, the method's own options schema, a device split the model allows,
a batch a contrastive loss can use, a method that fits the model, GPUs that
exist.  Building a model on the `meta` device costs no memory or time, so the
real stage count, input shapes and stage outputs are checked, not a table that
could drift.  Every problem of a cell is returned, one line each.
"""
from __future__ import annotations

import functools
import json
from typing import Optional

import torch
from pydantic import ValidationError

from bench.grid import Cell
from bench.grid.settings import format_validation_error
from models.build import build_model
from models.description import ModelDescription, describe_model

__all__ = ["cell_problems"]


@functools.lru_cache(maxsize=None)
def _model_facts(model: str, dataset: str, kwargs_json: str) -> tuple[Optional[ModelDescription], Optional[str]]:
    """(description, error) of `model` on `dataset`, from a meta-device build and forward."""
    from data import get_spec

    spec = get_spec(dataset)
    try:
        staged = build_model(model, spec, "meta", **json.loads(kwargs_json))
    except TypeError as exc:
        return None, f"settings.model_kwargs: {json.loads(kwargs_json)}: {exc}"
    if staged.modality != spec.modality:
        return None, f"model {model!r} is a {staged.modality} model but dataset {dataset!r} is {spec.modality}"
    dtype = torch.long if spec.modality == "text" else torch.float
    try:
        description = describe_model(staged, torch.zeros((2, *spec.input_shape), dtype=dtype, device="meta"), model)
    except Exception as exc:  # noqa: BLE001 - any shape error is reported to the user
        return None, f"model {model!r} does not accept {dataset!r} inputs of shape {tuple(spec.input_shape)} ({exc})"
    return description, None


def _option_path(cell: Cell) -> str:
    per_method = cell.settings.options_per_method()
    return f"settings.method_options.{cell.method}" if per_method else "settings.method_options"


def _cuda_problem(cell: Cell) -> Optional[str]:
    if cell.settings.device_kind != "cuda":
        return None
    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if present == 0:
        return "settings.device_kind: 'cuda': this machine has no CUDA device; use 'auto' or 'cpu'"
    if cell.devices > present:
        return f"devices: {cell.devices} GPUs asked for but {present} present; run with --only devices=<= {present}"
    return None


def cell_problems(cell: Cell) -> list[str]:
    """Every reason `cell` cannot run, one line each naming the key, the value and what is valid."""
    from data import UnknownDatasetError, get_spec
    from methods import UnknownMethodError, method_class
    from models import list_models

    problems: list[str] = []
    try:
        method_cls = method_class(cell.method)
    except UnknownMethodError as exc:
        problems.append(f"method: {exc}; a new method is one file in methods/ with @register_method")
        method_cls = None
    if cell.model not in list_models():
        problems.append(f"model: unknown model {cell.model!r}; choose one of {list_models()} "
                        "(a new model is one file in models/ with @register_model)")
    try:
        spec = get_spec(cell.dataset)
    except UnknownDatasetError as exc:
        problems.append(f"dataset: {exc}")
        spec = None
    s = cell.settings
    cuda = _cuda_problem(cell)
    if cuda:
        problems.append(f"{cuda}")
    if s.eval_points > 1 and s.train_steps < s.eval_points - 1:
        problems.append(f"settings.eval_points: {s.eval_points} needs settings.train_steps >= "
                        f"{s.eval_points - 1} (evaluations are spread over the untimed training steps)")
    if s.local_loss == "ntxent" and s.views != 2:
        problems.append("settings.local_loss: 'ntxent' needs the two-view batch; set views: 2")
    if spec is not None and s.glove and spec.modality != "text":
        problems.append(f"settings.glove: true needs a text dataset; {cell.dataset!r} is {spec.modality}")
    if method_cls is None or spec is None or cell.model not in list_models():
        return problems

    options = s.options_for(cell.method)
    try:
        method_cls.Options.model_validate(options)
    except ValidationError as exc:
        accepted = ", ".join(method_cls.option_names()) or "no options"
        problems += [f"{line}" + (f"; {cell.method} accepts {accepted}" if line.endswith("unknown key") else "")
                     for line in format_validation_error(exc, _option_path(cell))]
        return problems
    samples = cell.batch_size * s.views
    if samples < method_cls.min_batch_size:
        problems.append(f"batch_size: {cell.batch_size} is too small for {cell.method} (a contrastive "
                        f"loss needs >= {method_cls.min_batch_size} samples per batch)")
    description, error = _model_facts(cell.model, cell.dataset, json.dumps(s.model_kwargs, sort_keys=True))
    if description is None:
        problems.append(f"{error}")
        return problems
    stages = description.num_stages
    if cell.devices > stages and not getattr(method_cls, "replica", False):  # replicas (DDP) split no stages
        problems.append(f"devices: {cell.model} has {stages} stages and cannot be split over "
                        f"{cell.devices} devices; choose devices in {list(range(1, stages + 1))}")
    reason = method_cls.incompatibility(model=description, batch_size=cell.batch_size, devices=cell.devices,
                                        options=options)
    if reason:
        problems.append(f"{cell.method}: {reason}")
    if isinstance(s.balance, list) and (len(s.balance) != cell.devices or sum(s.balance) != stages):
        problems.append(f"settings.balance: {s.balance}: must list {cell.devices} stage counts "
                        f"summing to {stages}")
    return problems
