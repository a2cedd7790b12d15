"""The harness's CPU float mode: denormals flushed in every thread that sets its thread budget."""
import threading

import torch

from bench.execution.threads import denormals_flushed, use_threads


def _in_a_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_a_worker_that_sets_its_threads_flushes_denormals_and_its_own_threads_inherit_it():
    def worker():
        torch.set_flush_denormal(False)  # a thread as it may start: denormals computed
        before = denormals_flushed()
        use_threads(1)
        return before, denormals_flushed(), _in_a_thread(denormals_flushed)

    assert _in_a_thread(worker) == (False, True, True)


def test_the_probe_reads_the_mode_of_its_own_thread():
    def worker(flush):
        torch.set_flush_denormal(flush)
        return denormals_flushed()

    assert _in_a_thread(lambda: worker(True)) is True
    assert _in_a_thread(lambda: worker(False)) is False
