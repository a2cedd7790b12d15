"""SupCon in both variants against closed forms derived by hand and by scalar loops."""
import math

import pytest
import torch

from methods.losses import supcon_loss


def _scalar_supcon(z, labels, tau, variant):
    """Direct transcription of the definitions, one anchor and one pair at a time."""
    z = torch.nn.functional.normalize(z, dim=1).tolist()
    n = len(z)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))
    per_anchor = []
    for i in range(n):
        denom = sum(math.exp(dot(z[i], z[k]) / tau) for k in range(n) if k != i)
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        s = sum(dot(z[i], z[j]) / tau - math.log(denom) for j in pos)
        if variant == "reference":
            per_anchor.append(-s / (len(pos) + 1))
        elif pos:
            per_anchor.append(-s / len(pos))
    return sum(per_anchor) / len(per_anchor)


def test_hand_derived_closed_form():
    # z1 = z2 = e1 (same class), z3 = e2 (alone). Anchors 1 and 2: log p = -log(1 + e^-10).
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    expected = math.log1p(math.exp(-10))
    # reference: anchors 1, 2 contribute expected/2 each, anchor 3 contributes 0; mean over 3
    assert supcon_loss(z, y, 0.1, "reference").item() == pytest.approx(expected / 3, rel=1e-5)
    # textbook: divide by |P(i)| = 1, mean over the two anchors with a positive
    assert supcon_loss(z, y, 0.1, "textbook").item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["reference", "textbook"])
def test_matches_scalar_definition_on_random_batch(variant):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    got = supcon_loss(z, y, 0.1, variant).item()
    assert got == pytest.approx(_scalar_supcon(z, y.tolist(), 0.1, variant), rel=1e-9)


def test_variants_differ_and_reference_is_smaller():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    ref, book = supcon_loss(z, y, variant="reference"), supcon_loss(z, y, variant="textbook")
    assert ref < book  # dividing by |P|+1 instead of |P| shrinks every term


def test_rejects_batch_of_one_and_unknown_variant():
    with pytest.raises(ValueError, match="at least 2"):
        supcon_loss(torch.randn(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown SupCon variant"):
        supcon_loss(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]), variant="nope")
