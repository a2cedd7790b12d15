"""Early exits: the policies on hand-made logits, and the per-exit report of
DASCPL and Early Exit (accuracy of every exit, cost growing with depth)."""
import math

import pytest
import torch

from bench.cell.evaluation import evaluate_exits
from methods import MethodConfig, create_method
from methods.exits import choose_exits, parse_policy
from models import create_model

# Three exits, four samples.  Softmax of [a, 0] is e^a/(e^a+1): a = 5 -> 0.9933, a = 1 -> 0.731.
CONFIDENT, UNSURE = [5.0, 0.0], [1.0, 0.0]
LOGITS = [
    torch.tensor([CONFIDENT, UNSURE, UNSURE, UNSURE]),
    torch.tensor([UNSURE, CONFIDENT, UNSURE, UNSURE]),
    torch.tensor([UNSURE, UNSURE, CONFIDENT, UNSURE]),
]


def _entropy(a):
    p = math.exp(a) / (math.exp(a) + 1)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


@pytest.mark.parametrize(
    "policy,expected",
    [
        ("fixed:0", [0, 0, 0, 0]),
        ("fixed:2", [2, 2, 2, 2]),
        ("confidence:0.99", [0, 1, 2, 2]),  # sample 4 never qualifies: the last exit answers
        ("confidence:0.7", [0, 0, 0, 0]),  # every exit is confident enough
        (f"entropy:{_entropy(5.0) * 1.01}", [0, 1, 2, 2]),
        (f"entropy:{_entropy(1.0) * 1.01}", [0, 0, 0, 0]),
        (f"entropy:{_entropy(5.0) * 0.99}", [2, 2, 2, 2]),
    ],
)
def test_policy_picks_the_first_qualifying_exit(policy, expected):
    assert choose_exits(LOGITS, parse_policy(policy)).tolist() == expected


def test_policy_parsing_and_range():
    assert parse_policy("confidence:0.9").label == "confidence:0.9"
    with pytest.raises(ValueError, match="fixed:K"):
        parse_policy("threshold:0.5")
    with pytest.raises(ValueError, match="out of range"):
        choose_exits(LOGITS, parse_policy("fixed:3"))


def _trained(name, steps=2):
    torch.manual_seed(2)
    net = create_model("convnet", num_classes=4, image_size=8)
    # default predictor `m`: exit 1's classifier (2048 -> 512 -> 4) outweighs every stage
    method = create_method(name, net, MethodConfig(projector="i"))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        method.train_step(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g))
    return method


def _test_batches():
    g = torch.Generator().manual_seed(9)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(2)]


@pytest.mark.parametrize("name", ["dascpl", "early_exit"])
def test_report_scores_every_exit_and_cost_grows_with_depth(name):
    method = _trained(name)
    batches = _test_batches()
    report = evaluate_exits(method, batches, policies=["confidence:0", "entropy:10"])
    # one exit per stage; DASCPL's last stage has its own predictor and the head (the reference's K + 1)
    stages = method.model.num_stages + (1 if name == "dascpl" else 0)
    assert len(report.exit_acc) == len(report.exit_time_s) == len(report.exit_params) == stages
    # exit j's accuracy is that of its own classifier on the stages up to the one it reads
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    outputs = []
    with torch.no_grad():
        for stage in method.model.stages:
            x = stage(x)
            outputs.append(x)
        for j, (classifier, k) in enumerate(zip(method.exit_classifiers(), method.exit_stages())):
            acc = float((classifier(outputs[k].flatten(1)).argmax(1) == y).float().mean())
            assert report.exit_acc[j] == pytest.approx(acc)
    assert all(a < b for a, b in zip(report.exit_time_s, report.exit_time_s[1:]))
    assert all(a < b for a, b in zip(report.exit_params, report.exit_params[1:]))
    # the deepest exit is the deployed network
    count = lambda m: sum(p.numel() for p in m.parameters())
    classifiers = method.exit_classifiers()
    assert report.exit_params[-1] == count(method.model.stages) + sum(count(c) for c in classifiers)
    # fixed exits first, then the policies asked for, with their depths
    assert report.policy == [f"fixed:{k}" for k in range(stages)] + ["confidence:0", "entropy:10"]
    assert report.policy_depth[:stages] == [k + 1 for k in range(stages)]
    assert report.policy_acc[:stages] == pytest.approx(report.exit_acc)
    assert report.policy_depth[stages:] == [1.0, 1.0]  # both thresholds always hold at exit 1
    assert report.policy_acc[stages:] == pytest.approx([report.exit_acc[0]] * 2)


def test_methods_without_exits_report_none():
    assert evaluate_exits(_trained("scpl"), _test_batches()) is None
