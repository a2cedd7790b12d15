"""A bare training loop doing exactly SCPL's math, with none of the harness around it.

`make bench` times it against the harness's sequential executor on the same
model and batches: the difference is the harness's overhead (detach helpers,
profiler labels, busy-time bookkeeping, loss checks).

    OMP_NUM_THREADS=1 python -m bench.benchmark.bare_loop MODEL DATASET BATCH WARMUP STEPS SEED
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bench.execution.threads import use_threads

__all__ = ["bare_scpl_step_times"]


def bare_scpl_step_times(model_name: str, dataset: str, batch_size: int, warmup: int, steps: int, seed: int) -> list[float]:
    from data import get_spec, load_dataset
    from data.prepared import prepare_batches
    from methods.base import MethodConfig, make_optimizer
    from methods.losses import supcon_loss
    from methods.projectors import make_projector
    from models.build import build_model

    use_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(seed)
    spec = get_spec(dataset)
    train = load_dataset(dataset, split="train", seed=seed)
    batches = prepare_batches(train, batch_size, warmup + steps, seed + 10_000, 1, spec.modality)
    model = build_model(model_name, spec)
    projectors = [make_projector(None, d, model.modality) for d in model.feature_dims]
    optimizers = []
    for k, stage in enumerate(model.stages):
        params = list(stage.parameters()) + list(projectors[k].parameters())
        if k == model.num_stages - 1:
            params += list(model.head.parameters())
        optimizers.append(make_optimizer(params, MethodConfig()))  # the harness's optimizer, same math
    times = []
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        for k, stage in enumerate(model.stages):
            optimizers[k].zero_grad(set_to_none=True)
            out = stage(x)
            features = model.reducers[k](out)
            loss = supcon_loss(projectors[k](features), y, 0.1)
            if k == model.num_stages - 1:
                loss = loss + F.cross_entropy(model.head(features.detach()), y)
            loss.backward()
            optimizers[k].step()
            x = out.detach() if isinstance(out, torch.Tensor) else tuple(t.detach() if t is not None else None for t in out)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    model, dataset, batch, warmup, steps, seed = sys.argv[1:7]
    t = bare_scpl_step_times(model, dataset, int(batch), int(warmup), int(steps), int(seed))
    print(json.dumps({"step_time_median_s": statistics.median(t), "step_times_s": t}))
