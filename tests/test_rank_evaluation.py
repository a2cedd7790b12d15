"""Evaluation in the ranks equals the one-process evaluation of the same trained parameters.

Each method trains a few sequential steps here, then two gloo ranks unpickle
it, place the stages they own (or, DDP, the whole network; the stages a
pipeline rank does not own are filled with NaN, as they are stale in a cell)
and run `evaluate_in_ranks`; rank 0's `EvalPoint` must equal `evaluate_now` here:
SCPL as a pipeline, AL with its way back through the decoders, Early Exit
with its exits and policies, DASCPL with two exits on its last stage, DDP
as replicas over contiguous shards.  One run of the ranks evaluates them all, to keep
the test cheap.
"""
import io

import pytest
import torch

from bench.cell.evaluation import evaluate_now
from bench.cell.rank_evaluation import evaluate_in_ranks, shard
from bench.execution import resolve_devices
from bench.execution.rank_context import pipeline_context, replica_context
from bench.execution.ranks import run_ranks
from bench.execution.threads import use_threads
from methods import MethodConfig, create_method
from models import create_model

BALANCE = [2, 2]
CASES = {  # name: (method, options, replicas)
    "scpl": ("scpl", {}, False),
    "al": ("al", {"hidden": 16}, False),
    "early_exit": ("early_exit", {}, False),
    "dascpl": ("dascpl", {"predictor": "l"}, False),  # K + 1 exits: the last stage's predictor and the head
    "ddp": ("ddp", {}, True),
}


def _batches(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in sizes]


def _trained(name, options):
    torch.manual_seed(7)
    net = create_model("convnet", num_classes=4, image_size=8)
    method = create_method(name, net, MethodConfig(optimizer="sgd", lr=0.05, projector="l", options=options))
    method.place([torch.device("cpu")] * net.num_stages, BALANCE)
    for x, y in _batches([8, 8, 8], seed=1):
        method.train_step(x, y)
    return method


def _to_bytes(method):
    import cloudpickle  # methods hold lambdas (their optimizer factories)

    buffer = io.BytesIO()
    torch.save(method, buffer, pickle_module=cloudpickle)
    return buffer.getvalue()


def _evaluate_job(rank, world, device, blobs, test, val):
    """In each rank: every case's method, its own stages placed, evaluated by the ranks."""
    points = {}
    for case, blob in blobs.items():
        method = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
        if CASES[case][2]:
            ctx = replica_context(rank, world, device, method.model.num_stages)
            method.place([device] * method.model.num_stages)
        else:
            ctx = pipeline_context(rank, world, device, BALANCE)
            for k, step in enumerate(method.stage_steps()):
                if k in ctx.stages:
                    step.place(device)
                else:  # another rank's stage: stale in a real cell, so poisoned here
                    for p in step.parameters():
                        p.data.fill_(float("nan"))
        points[case] = evaluate_in_ranks(method, ctx, test, val)
    return points


@pytest.fixture(scope="module")
def evaluated():
    """(one-process EvalPoints, rank 0's and rank 1's ranked results) for every case."""
    test, val = _batches([6, 6, 6, 6, 4], seed=2), _batches([6, 5], seed=3)
    methods = {case: _trained(name, options) for case, (name, options, _) in CASES.items()}
    threads = torch.get_num_threads()
    use_threads(1)  # as each rank does, so every logit is computed the same way
    try:
        here = {case: evaluate_now(method, test, val) for case, method in methods.items()}
    finally:
        use_threads(threads)
    blobs = {case: _to_bytes(method) for case, method in methods.items()}
    ranked = run_ranks(_evaluate_job, resolve_devices(2, "cpu", threads_per_device=1), (blobs, test, val),
                       timeout_s=120)
    return here, ranked


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_ranks_give_the_one_process_evaluation(evaluated, case):
    here, ranked = evaluated
    expected, got = here[case], ranked[0][case]
    assert ranked[1][case] is None  # only rank 0 reports
    assert (got.test_acc, got.eval_samples, got.val_acc) == (expected.test_acc, expected.eval_samples,
                                                            expected.val_acc)
    assert got.eval_samples == 28 and 0 < got.test_acc < 1  # not a degenerate constant prediction
    if expected.exits is None:
        assert got.exits is None
        return
    for name in ("exit_acc", "exit_params", "policy", "policy_acc", "policy_depth"):
        assert getattr(got.exits, name) == getattr(expected.exits, name), name
    # times are measurements: one per exit, growing with depth (cumulative per-stage compute)
    times = got.exits.exit_time_s
    assert len(times) == len(expected.exits.exit_acc) and all(t > 0 for t in times) and times == sorted(times)
    assert len(times) == (5 if case == "dascpl" else 4)


def test_replica_shards_are_contiguous_and_cover_every_batch():
    batches = list(range(5))
    parts = [shard(batches, r, 2) for r in range(2)]
    assert parts == [[0, 1], [2, 3, 4]]
    assert sum((shard(batches, r, 3) for r in range(3)), []) == batches


# -- the profiled run in the ranks ------------------------------------------------------------------

class _CrossEntropy(torch.nn.Module):
    def forward(self, out, y):
        return torch.nn.functional.cross_entropy(out, y)


class _OwnStageLoop:
    """A `ProfiledLoop` of the smallest kind: rank r trains its stage step r on its own batches, steps marked."""

    def __init__(self, rank):
        from methods.base import StageStep, make_optimizer

        torch.manual_seed(rank)
        config = MethodConfig(optimizer="sgd", lr=0.1)
        self.step = StageStep(rank, torch.nn.Linear(8, 4), _CrossEntropy(), lambda p: make_optimizer(p, config))

    def run(self, batches, steps, warmup_steps):
        import time

        from methods.rank_method import step_hooks

        start, completions, losses = time.perf_counter(), [], []
        for i, (x, y) in zip(range(steps), batches):
            losses.append(float(self.step(x, y)[1]))
            completions.append(time.perf_counter())
            for hook in step_hooks():
                hook(i)
        return {"start_time": start, "completion_times": completions, "losses": losses}

    def record(self, gathered, warmup_steps):
        from bench.execution.record import RunRecord

        completions = [max(ts) for ts in zip(*(g["completion_times"] for g in gathered))]
        return RunRecord(start_time=min(g["start_time"] for g in gathered), completion_times=completions,
                         losses=gathered[0]["losses"], warmup_steps=warmup_steps)

    def state_dict(self):
        return {"step": self.step.state_dict(), "optimizer": self.step.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.step.load_state_dict(state["step"])
        self.step.optimizer.load_state_dict(state["optimizer"])


def _profile_job(rank, world, device, trace_dir):
    from bench.grid.settings import ProfileSchedule
    from bench.profiling.rank_profile import profile_in_rank

    loop = _OwnStageLoop(rank)
    g = torch.Generator().manual_seed(10 + rank)
    batches = [(torch.randn(4, 8, generator=g), torch.randint(0, 4, (4,), generator=g)) for _ in range(4)]
    loop.run(batches[:1], 1, 0)  # trained before: momentum buffers exist
    before = {n: t.clone() for n, t in loop.state_dict()["step"].items()}
    momentum = [s["momentum_buffer"].clone() for s in loop.step.optimizer.state.values()]
    ctx = pipeline_context(rank, world, device, [1, 1])
    plan = ProfileSchedule(wait=0, warmup=1, active=2)
    result = profile_in_rank(loop, ctx, batches, len(batches), plan, trace_dir, "scpl", 4)
    unchanged = (all(torch.equal(t, before[n]) for n, t in loop.state_dict()["step"].items())
                 and all(torch.equal(s["momentum_buffer"], m) for s, m in zip(loop.step.optimizer.state.values(),
                                                                              momentum)))
    return result, unchanged


@pytest.mark.slow
def test_a_profiled_rank_run_writes_a_marked_trace_per_rank_and_leaves_the_rank_unchanged(tmp_path):
    from bench.profiling.thread_names import thread_names_of
    from bench.profiling.trace_events import find_trace_files, load_trace_dir

    trace_dir = tmp_path / "traces" / "cell"
    (rank0, same0), (rank1, same1) = run_ranks(_profile_job, resolve_devices(2, "cpu", threads_per_device=1),
                                               (trace_dir,), timeout_s=120)
    assert same0 and same1, "the profiled run changed a rank's parameters or optimizer state"
    assert rank1 is None and rank0 is not None
    files = find_trace_files(trace_dir)
    assert sorted(f.name.split(".")[0] for f in files) == ["scpl-2dev-b4-rank0", "scpl-2dev-b4-rank1"]
    trace = load_trace_dir(trace_dir)
    assert [s.number for s in trace.steps] == [1, 2]  # the warm-up step 0 unrecorded, the active ones marked
    assert {(e.stage, e.phase) for e in trace.phases} == {(k, p) for k in (0, 1) for p in ("FW", "LOSS", "BW", "UP")}
    for rank, f in enumerate(sorted(files)):
        assert f"rank{rank} (cpu)" in thread_names_of(f).values()
    assert rank0.trace_dir == trace_dir and rank0.profiled_step_median_s > 0 and rank0.threads == 2
    assert rank0.summary is not None and len(rank0.summary.stage_busy_s) == 2
