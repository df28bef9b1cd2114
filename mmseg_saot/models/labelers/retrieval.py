"""Global image descriptors and retrieval of the most similar source images."""
import torch
import torch.nn.functional as F


def global_descriptor(feats: torch.Tensor) -> torch.Tensor:
    """Mean of the unit patch features, re-normalised.

    Args:
        feats: ``(B, P, D)`` patch features.

    Returns:
        ``(B, D)`` unit descriptors.
    """
    return F.normalize(F.normalize(feats.float(), dim=-1).mean(1), dim=-1)


def retrieve(target_desc: torch.Tensor, source_desc: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` sources most cosine-similar to each target, best first.

    Args:
        target_desc: ``(T, D)`` descriptors; source_desc: ``(S, D)``.
        k: neighbours, clipped to S.

    Returns:
        ``(T, min(k, S))`` long indices into the sources.
    """
    sim = F.normalize(target_desc, dim=-1) @ F.normalize(source_desc, dim=-1).t()
    return sim.topk(min(int(k), source_desc.shape[0]), dim=1).indices
