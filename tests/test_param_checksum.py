"""The final-parameter checksum (bench/cell/param_checksum.py): it sees a one-ulp change of one parameter and
any buffer change, is equal for equal methods, covers every tensor of every method once, and does not
depend on how the stages were grouped over processes (the ranks' digests, combined, give the
one-process checksum; DDP replicas whose parameters differ are refused).

Built methods only, nothing trained: each test takes well under a second.
"""
import pytest
import torch

from bench.cell.param_checksum import (
    ReplicasDisagree,
    StageDigests,
    method_checksum,
    ranks_checksum,
    stage_tensors,
    tensors_digest,
)
from data import get_spec
from methods import MethodConfig, create_method, list_methods
from models.build import build_model

DATASET = "cifar10@synthetic"


def _method(name: str = "scpl", model: str = "convnet", seed: int = 0):
    torch.manual_seed(seed)
    return create_method(name, build_model(model, get_spec(DATASET)), MethodConfig(lr=1e-3))


def _stages(method) -> range:
    return range(method.model.num_stages)


def test_equal_methods_have_equal_checksums_and_another_seed_does_not():
    assert method_checksum(_method()) == method_checksum(_method())
    assert method_checksum(_method()) != method_checksum(_method(seed=1))
    assert len(method_checksum(_method())) == 64  # sha256, hex


@pytest.mark.parametrize("name", ["scpl", "bp"])
def test_one_ulp_of_one_parameter_changes_the_checksum(name):
    method = _method(name)
    before = method_checksum(method)
    weight = next(method.model.stages[1].parameters())
    with torch.no_grad():
        flat = weight.view(-1)
        flat[3] = torch.nextafter(flat[3], torch.tensor(float("inf")))
    assert method_checksum(method) != before


def test_a_buffer_change_changes_the_checksum():
    method = _method("bp", "resnet32")  # batch norm: running statistics are buffers
    before = method_checksum(method)
    running_mean = next(b for n, b in method.model.stages[0].named_buffers() if n.endswith("running_mean"))
    running_mean.add_(1e-3)
    assert method_checksum(method) != before


@pytest.mark.parametrize("name", list_methods())
def test_every_parameter_and_buffer_is_in_exactly_one_stage(name):
    method = _method(name)
    owners: dict = {}
    for k in _stages(method):
        for tensor in stage_tensors(method, k).values():
            owners.setdefault(id(tensor), []).append(k)
    every = [t for m in method.modules() for t in [*m.parameters(), *m.buffers()]]
    assert all(len(owners.get(id(t), [])) == 1 for t in every)


@pytest.mark.parametrize("name, groups", [("scpl", [[0, 1], [2, 3]]), ("scpl", [[0], [1, 2, 3]]),
                                          ("gpipe_dist", [[0, 1, 2], [3]])])
def test_stage_groups_combined_give_the_one_process_checksum(name, groups):
    method = _method(name)
    gathered = [StageDigests.of(method, group, replica=False) for group in groups]
    assert ranks_checksum(gathered, method.model.num_stages, replica=False) == method_checksum(method)
    with pytest.raises(ValueError, match="stages"):  # a stage missing
        ranks_checksum(gathered[:1], method.model.num_stages, replica=False)


def test_ddp_replicas_use_rank_0s_digests_and_must_agree_on_parameters():
    replicas = [_method("ddp", "resnet32") for _ in range(2)]
    num_stages = replicas[0].model.num_stages
    bn = next(b for n, b in replicas[1].model.stages[0].named_buffers() if n.endswith("running_mean"))
    bn.add_(1.0)  # buffers are per replica (each one's batch norm sees its own shard)
    gathered = [StageDigests.of(m, _stages(m), replica=True) for m in replicas]
    assert ranks_checksum(gathered, num_stages, replica=True) == method_checksum(replicas[0])
    with torch.no_grad():
        next(replicas[1].model.head.parameters()).view(-1)[0] += 1.0
    gathered[1] = StageDigests.of(replicas[1], _stages(replicas[1]), replica=True)
    with pytest.raises(ReplicasDisagree, match=rf"replicas \[1\].*stages \[{num_stages - 1}\]"):
        ranks_checksum(gathered, num_stages, replica=True)


def test_a_digest_holds_any_dtype_and_says_which():
    values = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    digests = {dtype: tensors_digest({"t": values.to(dtype)}) for dtype in (torch.float32, torch.bfloat16)}
    assert len(set(digests.values())) == 2
    assert tensors_digest({"n": torch.tensor(3)}) != tensors_digest({"n": torch.tensor(4)})  # 0-dim, int64
    assert tensors_digest({"t": values}) != tensors_digest({"t": values.reshape(3, 2)})  # the shape counts
    assert tensors_digest({"t": values.t()}) == tensors_digest({"t": values.t().contiguous()})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_method_has_its_cpu_copys_checksum():
    method = _method("scpl")
    on_cpu = method_checksum(method)
    method.place([torch.device("cuda:0")] * method.model.num_stages)
    assert method_checksum(method) == on_cpu
