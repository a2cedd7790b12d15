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

__all__ = ["supcon_loss", "SUPCON_VARIANTS"]

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
