"""SuNCEt and NT-Xent against closed forms derived by hand, and SCPL trained with each."""
import math

import pytest
import torch

from methods import MethodConfig, create_method
from methods.losses import local_loss, ntxent_loss, suncet_loss, supcon_loss
from models import create_model

E1, E2, NE1 = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]
R = 1 / math.sqrt(2)


def test_suncet_hand_derived():
    # tau = 0.1, so a dot product d becomes the logit 10 d.
    #   anchors 1, 2 (e1, class 0): positive e1 (10), negatives e2 (0), -e1 (-10)
    #   anchor 3 (e2, class 1): positive -e1 (0), others e1, e1 (0): -log(1/3)
    #   anchor 4 (-e1, class 1): positive e2 (0), others e1, e1 (-10 each)
    z = torch.tensor([E1, E1, E2, NE1], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    first = math.log1p(math.exp(-10) + math.exp(-20))
    expected = (2 * first + math.log(3) + math.log1p(2 * math.exp(-10))) / 4
    assert suncet_loss(z, y, 0.1).item() == pytest.approx(expected, rel=1e-12)


def _scalar_suncet(z, labels, tau):
    z = torch.nn.functional.normalize(z, dim=1).tolist()
    dot = lambda a, b: sum(p * q for p, q in zip(a, b))
    terms = []
    for i in range(len(z)):
        others = [k for k in range(len(z)) if k != i]
        pos = [j for j in others if labels[j] == labels[i]]
        if pos:  # an anchor alone in its class has no positive mass: -log 0 is left out
            num = sum(math.exp(dot(z[i], z[j]) / tau) for j in pos)
            terms.append(-math.log(num / sum(math.exp(dot(z[i], z[k]) / tau) for k in others)))
    return sum(terms) / len(terms)


def test_suncet_matches_scalar_definition_and_differs_from_supcon():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 3])  # class 3 has a lone anchor
    got = suncet_loss(z, y, 0.1).item()
    assert got == pytest.approx(_scalar_suncet(z, y.tolist(), 0.1), rel=1e-10)
    # log of the summed positives <= mean of the logs (Jensen): SuNCEt <= textbook SupCon
    assert got < supcon_loss(z, y, 0.1, "textbook").item()
    assert local_loss("suncet", z, y, 0.1, "reference").item() == got


def test_ntxent_hand_derived():
    # two views of N = 2 samples: rows 0, 1 are view 1, rows 2, 3 view 2; i's positive is i + 2 mod 4.
    #   anchor 0 (e1): positive (e1+e2)/sqrt2 (logit 10/sqrt2), others e2, e2 (0)
    #   anchors 1, 3 (e2): positive e2 (10), others e1 (0) and (e1+e2)/sqrt2 (10/sqrt2)
    #   anchor 2: all three logits are 10/sqrt2: -log(1/3)
    z = torch.tensor([E1, E2, [R, R], E2], dtype=torch.float64)
    a = 10 * R
    l0 = math.log1p(2 * math.exp(-a))
    l1 = math.log1p(math.exp(-10) + math.exp(a - 10))
    expected = (l0 + 2 * l1 + math.log(3)) / 4
    labels = torch.tensor([0, 1, 0, 1])
    assert ntxent_loss(z, labels, 0.1).item() == pytest.approx(expected, rel=1e-12)
    # labels play no part: the positive is the other view only
    assert ntxent_loss(z, torch.tensor([0, 0, 0, 0]), 0.1).item() == pytest.approx(expected, rel=1e-12)


def test_ntxent_needs_the_two_view_batch():
    with pytest.raises(ValueError, match="two-view"):
        ntxent_loss(torch.randn(5, 3), None)
    with pytest.raises(ValueError, match="unknown local_loss"):
        local_loss("triplet", torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 0.1, "reference")


@pytest.mark.parametrize("name", ["suncet", "ntxent"])
def test_scpl_trains_with_the_local_loss(name):
    torch.manual_seed(0)
    net = create_model("convnet", num_classes=4, image_size=8)
    scpl = create_method("scpl", net, MethodConfig(projector="i", local_loss=name))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 4, (6,), generator=g)
    if name == "ntxent":  # the two-view batch: [x; view2(x)], labels duplicated
        x, y = torch.cat([x, x + 0.1 * torch.randn(x.shape, generator=g)]), torch.cat([y, y])
    objective = scpl.stage_steps()[0].objective
    assert objective.local_loss == name
    losses = [scpl.train_step(x, y) for _ in range(6)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
