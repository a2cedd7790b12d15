"""Local losses of the decoupled methods, written once and tested against closed forms.

Why two SupCon variants: the SCPL reference code divides each anchor's sum of
positive log-probabilities by |P(i)| + 1 (its positive mask includes the anchor
itself) and averages over *all* anchors; the paper's equation (2) and Khosla et
al. divide by |P(i)| and only anchors with a positive can be averaged.  The
reference variant reproduces the published numbers, so it is the default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supcon_loss", "suncet_loss", "ntxent_loss", "local_loss", "SUPCON_VARIANTS", "LOCAL_LOSSES"]

SUPCON_VARIANTS = ("reference", "textbook")


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    variant: str = "reference",
) -> torch.Tensor:
    """Supervised contrastive loss of L2-normalised `features` (batch, dim).

    Args:
        features: projector outputs; normalised here.
        labels: (batch,) integer class labels; equal labels are positives.
        temperature: tau of the softmax (0.1 in SCPL).
        variant: "reference" (SCPL code: divide by |P(i)|+1, mean over all
            anchors) or "textbook" (Khosla et al.: divide by |P(i)|, mean over
            anchors that have at least one positive).
    """
    if variant not in SUPCON_VARIANTS:
        raise ValueError(f"unknown SupCon variant {variant!r}; choose one of {SUPCON_VARIANTS}")
    if features.shape[0] < 2:
        raise ValueError("a contrastive loss needs a batch of at least 2 samples")
    z = F.normalize(features, dim=1)
    logits = z @ z.T / temperature
    # Subtracting the (detached) row max changes nothing mathematically; it keeps exp() finite.
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    n = z.shape[0]
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    same_label = labels.view(-1, 1) == labels.view(1, -1)
    positives = (same_label & not_self).to(logits.dtype)
    exp_logits = torch.exp(logits) * not_self.to(logits.dtype)
    log_prob = logits - torch.log(exp_logits.sum(dim=1, keepdim=True))
    positive_sum = (positives * log_prob).sum(dim=1)
    num_positives = positives.sum(dim=1)
    if variant == "reference":
        # The reference's mask counts the anchor itself: |P(i)| + 1, never zero.
        return -(positive_sum / (num_positives + 1)).mean()
    has_positive = num_positives > 0
    if not bool(has_positive.any()):
        return logits.sum() * 0.0  # no anchor has a positive: loss is defined as 0, graph kept
    return -(positive_sum[has_positive] / num_positives[has_positive]).mean()


def _similarity_logits(features: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-similarity logits with the diagonal masked out (-inf), and that mask."""
    if features.shape[0] < 2:
        raise ValueError("a contrastive loss needs a batch of at least 2 samples")
    z = F.normalize(features, dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return logits.masked_fill(self_mask, float("-inf")), self_mask


def suncet_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SuNCEt (Assran et al.): -log of the *summed* same-class similarity mass.

    l_i = -log( sum_{j != i, y_j = y_i} exp(s_ij / t) / sum_{k != i} exp(s_ik / t) ),
    averaged over anchors that have at least one positive (SupCon averages logs instead).
    """
    logits, self_mask = _similarity_logits(features, temperature)
    positives = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    has_positive = positives.any(dim=1)
    if not bool(has_positive.any()):
        return features.sum() * 0.0
    return (log_all - log_pos)[has_positive].mean()


def ntxent_loss(features: torch.Tensor, labels: torch.Tensor | None = None, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR): the positive of sample i is its other view, i + N (mod 2N); labels unused.

    Needs the two-view batch (`views: 2`): rows 0..N-1 are view 1, rows N..2N-1 view 2.
    """
    n2 = features.shape[0]
    if n2 % 2:
        raise ValueError("NT-Xent needs the two-view batch (2N samples, set views: 2)")
    logits, _ = _similarity_logits(features, temperature)
    targets = (torch.arange(n2, device=features.device) + n2 // 2) % n2
    return F.cross_entropy(logits, targets)


LOCAL_LOSSES = ("supcon", "suncet", "ntxent")


def local_loss(name: str, features: torch.Tensor, labels: torch.Tensor, temperature: float, variant: str) -> torch.Tensor:
    """Dispatch on the `local_loss` setting of SCPL-style stages."""
    if name == "supcon":
        return supcon_loss(features, labels, temperature, variant)
    if name == "suncet":
        return suncet_loss(features, labels, temperature)
    if name == "ntxent":
        return ntxent_loss(features, labels, temperature)
    raise ValueError(f"unknown local_loss {name!r}; choose one of {LOCAL_LOSSES}")
