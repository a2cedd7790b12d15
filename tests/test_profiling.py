"""Profiling: traces of every stage thread, metrics against hand-made traces, timelines and figures."""
import dataclasses
import gzip
import json
import threading

import pytest
import torch
import torch.profiler

import bench.profiling.profiler as profiler_module
from bench.cell.phases import run_cell
from bench.grid import Cell, CellSettings, GridError, load_grid
from bench.grid.settings import ProfileSchedule
from bench.profiling.profiler import ProfileResult, profile_columns, trace_lanes
from bench.profiling.thread_names import ThreadNameRecorder, name_threads, thread_names_of
from bench.profiling.trace_events import find_trace_files, load_trace, load_trace_dir
from bench.profiling.trace_metrics import stage_lanes, summarize_trace
from bench.report.figures import write_figures
from bench.report.timeline import TimelinePanel, save_figure, timeline_figure
from bench.store.fragments import append_rows
from bench.store.read import read_results
from methods.base import StageStep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _event(name, ts, dur, tid=1, cat="user_annotation", pid=7):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid}


def _write_trace(path, events, base_ns=0, gz=False):
    blob = json.dumps({"baseTimeNanoseconds": base_ns, "traceEvents": events})
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(blob)
    else:
        path.write_text(blob)
    return path


def _pipeline_trace(tmp_path, gz=False):
    """Step window [1000, 1100] µs. Stage 0: [1000, 1060]; stage 1: [1025, 1080] + [1090, 1100] (clipped)."""
    events = [
        _event("ProfilerStep#3", 1000, 100, tid=0),
        _event("stage0/forward", 900, 50, tid=1),  # before the window: not counted
        _event("stage0/forward", 1000, 40, tid=1),
        _event("stage0/backward", 1040, 20, tid=1),
        _event("copy stage0->stage1", 1025, 5, tid=2),
        _event("stage1/forward", 1030, 50, tid=2),
        _event("stage1/step", 1090, 20, tid=2),  # runs past the window's end
        _event("aten::addmm", 1000, 100, tid=1, cat="cpu_op"),  # not a phase label
    ]
    name = "cell.1.pt.trace.json" + (".gz" if gz else "")
    return _write_trace(tmp_path / name, events, gz=gz)


def test_hand_made_trace_fractions(tmp_path):
    trace = load_trace(_pipeline_trace(tmp_path))
    assert [s.number for s in trace.steps] == [3]
    assert {e.phase for e in trace.phases} == {"FW", "BW", "UP", "COPY"}
    two_devices = summarize_trace(trace)  # each stage its own device
    assert two_devices.span_s == pytest.approx(100e-6, abs=1e-15)
    assert two_devices.stage_busy_s == pytest.approx([60e-6, 65e-6], abs=1e-15)
    assert two_devices.bubble_fraction == pytest.approx(1 - 125 / 200, abs=1e-12)
    assert two_devices.overlap_fraction == pytest.approx(35 / 100, abs=1e-12)  # both busy in [1025, 1060]
    one_device = summarize_trace(trace, lanes=[0, 0])  # both stages share a device: no overlap possible
    assert one_device.lane_busy_s == pytest.approx([90e-6], abs=1e-15)
    assert one_device.bubble_fraction == pytest.approx(0.1, abs=1e-12)
    assert one_device.overlap_fraction == 0.0


def test_gzip_trace_reads_the_same(tmp_path):
    plain = summarize_trace(load_trace(_pipeline_trace(tmp_path)))
    gz = summarize_trace(load_trace(_pipeline_trace(tmp_path, gz=True)))
    assert plain == gz


def test_unstaged_backward_counts_as_one_device(tmp_path):
    """BP: the backward is one autograd call through every stage; only one device works at a time."""
    events = [
        _event("ProfilerStep#0", 0, 100), _event("stage0/forward", 0, 20), _event("stage1/forward", 20, 20),
        _event("bp/backward", 40, 50), _event("bp/step", 90, 10),
    ]
    trace = load_trace(_write_trace(tmp_path / "cell.2.pt.trace.json", events))
    summary = summarize_trace(trace, lanes=stage_lanes([1, 1]))
    assert summary.bubble_fraction == pytest.approx(1 - 100 / 200, abs=1e-12)
    assert summary.overlap_fraction == 0.0


def test_ranks_align_on_base_time(tmp_path):
    """Per-rank traces (multi-process methods) share a clock through baseTimeNanoseconds."""
    _write_trace(tmp_path / "rank0.1.pt.trace.json", [_event("Forward 0", 0, 50)], base_ns=0)
    _write_trace(tmp_path / "rank1.1.pt.trace.json", [_event("Forward 0", 0, 50)], base_ns=20_000)  # 20 µs later
    trace = load_trace_dir(tmp_path)
    assert sorted(e.stage for e in trace.phases) == [0, 1]
    summary = summarize_trace(trace)
    assert summary.span_s == pytest.approx(70e-6, abs=1e-15)
    assert summary.overlap_fraction == pytest.approx(30 / 70, abs=1e-12)
    assert summary.bubble_fraction == pytest.approx(1 - 100 / 140, abs=1e-12)


def test_unstaged_labels_in_a_rank_trace_are_the_ranks(tmp_path):
    """DDP's `ddp/forward` names no stage: in rank r's trace it is rank r's lane, elsewhere unstaged."""
    events = [_event("ProfilerStep#1", 0, 100, tid=0), _event("ddp/forward", 0, 40), _event("ddp/backward", 40, 50),
              _event("ddp/step", 90, 10)]
    _write_trace(tmp_path / "ddp-2dev-b8-rank0.1.pt.trace.json", events)
    _write_trace(tmp_path / "ddp-2dev-b8-rank1.1.pt.trace.json", events, base_ns=50_000)  # 50 µs later
    trace = load_trace_dir(tmp_path)
    assert {(e.stage, e.phase) for e in trace.phases} == {(r, p) for r in (0, 1) for p in ("FW", "BW", "UP")}
    assert [(s.number, s.start_us, s.end_us) for s in trace.steps] == [(1, 0.0, 150.0)]  # one step over both ranks
    summary = summarize_trace(trace)
    assert summary.lane_busy_s == [pytest.approx(100e-6), pytest.approx(100e-6)]
    assert summary.overlap_fraction == pytest.approx(50 / 150)
    alone = load_trace(_write_trace(tmp_path / "bp.1.pt.trace.json", events))
    assert {e.stage for e in alone.phases} == {None}


def test_a_trace_without_labels_leaves_the_fractions_empty(tmp_path):
    """No phase labels: the profiled step time and the trace stay, the fractions are None, with a note."""
    result = ProfileResult(tmp_path / "traces" / "c", 0.2, None, 0, "no phase labels")
    columns = profile_columns(result, 0.1, tmp_path)
    assert columns["trace_dir"] == "traces/c" and columns["profiler_slowdown"] == pytest.approx(2.0)
    assert "bubble_fraction" not in columns and "trace_span_s" not in columns


@pytest.mark.parametrize("method", ["ddp", "gpipe_dist"])
@pytest.mark.slow
def test_profiled_rank_cell_has_a_marked_labelled_trace_per_rank(tmp_path, method):
    """DDP and gpipe_dist as the paper grids profile them (one iteration): ok, one trace per rank.

    Their rank traces had no labels and no step marks, so the profiling step
    failed every such cell; now each rank labels its phases (the rank is the lane)
    and steps its profiler, recording the schedule's active step only.
    """
    settings = CellSettings(warmup_steps=1, steps=1, eval_batches=1, eval_batch_size=16, balance="even",
                            threads_per_device=1, profile={"wait": 0, "warmup": 1, "active": 1})
    row = run_cell(Cell("prof", method, "convnet", "cifar10@synthetic", 8, 2, 0, settings), results_dir=tmp_path)
    assert row.status == "ok", row.error
    files = find_trace_files(tmp_path / row.trace_dir)
    assert sorted(f.name.split(".")[0] for f in files) == [f"{method}-2dev-b8-rank0", f"{method}-2dev-b8-rank1"]
    trace = load_trace_dir(tmp_path / row.trace_dir)
    assert [s.number for s in trace.steps] == [1]  # warm-up step 0 not recorded, active step 1 marked
    for rank in (0, 1):
        assert {e.phase for e in trace.phases if e.stage == rank} >= {"FW", "BW", "UP"}
    assert len(row.trace_stage_busy_s) == 2 and min(row.trace_stage_busy_s) > 0
    assert 0.0 <= row.bubble_fraction < 1.0 and row.trace_span_s > 0
    assert trace_lanes(method, row.balance) is None  # each rank its own row in a timeline
    assert trace_lanes("scpl", [1, 2]) == [0, 1, 1]


def test_profile_setting_is_checked(tmp_path):
    base = "axes: {method: [bp], model: [convnet], dataset: [cifar10@synthetic], batch_size: [8], devices: [1]}\n"
    for bad in ("{wait: 0, active: 0}", "{warmup: 1, active: 1, repeat: 2}", "{active: -1}", "yes"):
        path = tmp_path / "g.yaml"
        path.write_text(base + f"settings: {{profile: {bad}}}\n")
        with pytest.raises(GridError, match="profile"):
            load_grid(str(path))
    assert ProfileSchedule.from_setting({"wait": 1, "warmup": 1, "active": 2}).active_indices() == range(2, 4)


def test_profiling_off_keeps_cell_ids():
    """A grid without `profile` keeps the ids (and resumability) it had before the setting existed."""
    cell = Cell("g", "bp", "convnet", "cifar10@synthetic", 8, 1, 0, CellSettings())
    assert "profile" not in cell.identity()["settings"]
    on = dataclasses.replace(cell, settings=CellSettings(profile={"active": 1}))
    assert on.cell_id != cell.cell_id


def _scpl_cell(profile):
    settings = CellSettings(warmup_steps=1, steps=2, eval_batches=1, eval_batch_size=32, balance="even",
                            profile=profile)
    return Cell("prof", "scpl", "convnet", "cifar10@synthetic", 8, 2, 0, settings)


class _MeetInTheRecordedWindow:
    """Both stage workers of a profiled 2-device SCPL run busy at once inside the trace's window, by synchronisation.

    While the profiler runs, device 1's first stage (stage 2), inside its labelled
    forward on batch 1, waits until the profiler has stepped into its first active
    step and then meets device 0's stage 0, inside its labelled forward on batch 2,
    at a barrier: both labels are open at one instant of the recorded window,
    however the threads are scheduled.  An executor that joined the devices after
    every batch could never let them meet; the timeouts then fail the cell.
    """

    TIMEOUT_S = 60.0

    def __init__(self) -> None:
        self.armed, self.steps, self.calls, self.met = False, 0, {}, []
        self.stepped = threading.Condition()
        self.barrier = threading.Barrier(2, timeout=self.TIMEOUT_S)

    def install(self, monkeypatch) -> None:
        window, encode = self, StageStep.encode

        class CountedProfile(torch.profiler.profile):
            def __enter__(self):
                window.armed, window.steps, window.calls = True, 0, {}
                return super().__enter__()

            def __exit__(self, *exc):
                window.armed = False
                return super().__exit__(*exc)

            def step(self) -> None:
                super().step()  # ProfilerStep#n starts in here
                with window.stepped:
                    window.steps += 1
                    window.stepped.notify_all()

        def meeting_encode(step, x, y):
            window.arrive(step.index)
            return encode(step, x, y)

        monkeypatch.setattr(profiler_module, "profile", CountedProfile)
        monkeypatch.setattr(StageStep, "encode", meeting_encode)

    def arrive(self, stage: int) -> None:
        """Called inside `stage{k}/forward` (StageStep.encode), in the stage's worker thread."""
        if not self.armed:
            return  # the timed steps and the unprofiled cell run as they are
        batch = self.calls.get(stage, 0)
        self.calls[stage] = batch + 1
        if (stage, batch) == (2, 1):
            with self.stepped:
                if not self.stepped.wait_for(lambda: self.steps >= 1, timeout=self.TIMEOUT_S):
                    raise AssertionError("the profiler never stepped into its first active step")
            self.barrier.wait()
            self.met.append(stage)
        elif (stage, batch) == (0, 2):
            self.barrier.wait()
            self.met.append(stage)


@pytest.mark.slow
def test_profiled_scpl_cell(tmp_path, monkeypatch):
    """SCPL on 2 CPU devices: a trace from both stage workers with every phase, a timeline, and unchanged numbers."""
    window = _MeetInTheRecordedWindow()
    window.install(monkeypatch)
    # two active steps: a window of one step may cut a fast stage's iteration in two
    row = run_cell(_scpl_cell({"wait": 0, "warmup": 1, "active": 2}), results_dir=tmp_path)
    assert row.status == "ok", row.error
    assert row.trace_dir.startswith("traces/")
    files = find_trace_files(tmp_path / row.trace_dir)
    assert len(files) == 1
    assert files[0].name.startswith("scpl-2dev-b8.")  # TensorBoard's worker name says what ran
    names = thread_names_of(files[0])
    trace = load_trace_dir(tmp_path / row.trace_dir)
    lanes = stage_lanes(row.balance)
    tids = {d: {e.tid for e in trace.phases if e.stage is not None and lanes[e.stage] == d} for d in (0, 1)}
    assert tids[0] and tids[1] and not tids[0] & tids[1]  # each device's stages ran in their own thread
    for d in (0, 1):  # thread rows named after the stage worker and its device, not `thread 6845 (python)`
        assert {names.get(t) for t in tids[d]} == {f"stage-worker-{d} (cpu-worker{d})"}
    for stage in range(len(lanes)):
        assert {e.phase for e in trace.phases if e.stage == stage} >= {"FW", "LOSS", "BW", "UP"}
    assert any(e.phase == "COPY" for e in trace.phases)
    assert len(row.trace_stage_busy_s) == len(lanes) and min(row.trace_stage_busy_s) > 0
    assert 0.0 <= row.bubble_fraction < 1.0
    assert sorted(window.met) == [0, 2]  # the two stage workers met inside the recorded window ...
    assert row.overlap_fraction > 0.0  # ... so the trace shows them busy at the same time
    assert row.profiler_slowdown > 0 and row.profiled_step_median_s > 0
    assert len(row.step_times_s) == 2  # the timed steps are the timed steps only

    stem = tmp_path / "timeline"
    png, svg = save_figure(timeline_figure([TimelinePanel("SCPL, 2 devices", trace, lanes)]), stem)
    assert png.read_bytes()[:8] == PNG_MAGIC and svg.read_text().lstrip().startswith("<?xml")

    append_rows(tmp_path, [row])
    written = write_figures(tmp_path, read_results(tmp_path), out_dir=tmp_path / "plots")
    names = {p.name for p in written}
    assert {"timeline_convnet_cifar10-synthetic_b8.png", "epoch_time_convnet_cifar10-synthetic.png"} <= names

    plain = run_cell(_scpl_cell(None), results_dir=tmp_path / "off")
    assert plain.trace_dir is None and plain.bubble_fraction is None
    assert plain.final_train_loss == row.final_train_loss  # profiling trains a copy, after evaluation
    assert plain.test_acc == row.test_acc


def test_thread_names_recorded_and_written(tmp_path):
    """Threads started inside the recorder are named by native id; the trace's thread rows get those names."""
    import threading

    with ThreadNameRecorder("main") as recorder:
        worker = threading.Thread(target=lambda: None, name="stage-worker-1 (cpu-worker1)")
        worker.start()
        worker.join()
    assert recorder.names[threading.get_native_id()] == "main"
    assert recorder.names[worker.native_id] == "stage-worker-1 (cpu-worker1)"
    events = [
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 11, "args": {"name": "thread 11 (python)"}},
        {"ph": "M", "name": "process_name", "pid": 7, "tid": 0, "args": {"name": "python"}},
        _event("stage0/forward", 0, 10, tid=11), _event("stage1/forward", 0, 10, tid=12),  # 12: no metadata yet
        _event("aten::mm", 0, 10, tid=13),
    ]
    path = _write_trace(tmp_path / "w.1.pt.trace.json.gz", events, gz=True)
    assert name_threads(path, {11: "stage-worker-0 (cpu-worker0)", 12: "stage-worker-1 (cpu-worker1)"}, "cell") == 2
    names = thread_names_of(path)
    assert names == {11: "stage-worker-0 (cpu-worker0)", 12: "stage-worker-1 (cpu-worker1)"}
    assert len(load_trace(path).phases) == 2  # the trace still reads
