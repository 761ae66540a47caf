"""Metric-learning losses for audio-text keyword spotting, selectable by name.

Each loss is one module in this package (see ``docs/LOSSES.md``). ``LOSSES`` maps names to classes;
``build_loss(name, **kwargs)`` instantiates one. Signatures:

- proxy family (``asyp``, ``proxy_nca``, ``proxy_bd``, ``proxy_ms``, ``triplet``, ``mv_triplet``,
  ``adams``, ``ap``, ``apfc``): ``forward(audio_emb [B, D], proxies [C, D], labels [B]) -> scalar``
  (``adams`` also takes ``class_ids [C] | None``);
- ``rpl``: ``forward(audio_emb [B, D], text_emb [B, D], labels [B])``;
- ``mal``: ``forward(audio_emb [N, D], text_emb [M, D])``;
- ``sphereface2``: ``forward(audio_emb [B, D], labels [B])``;
- ``add``: ``forward(emb [B, D], labels [B])``.

:class:`BackgroundNegativeLoss` (``forward(background [N, D], proxies [K, D], mask [N, K])``) is not
a selectable utterance loss: the trainer adds it on top when ``loss.background_weight > 0``.

Example:
    >>> loss = build_loss("asyp")
    >>> type(loss).__name__, loss.alpha, loss.beta, loss.margin
    ('AsymmetricProxyLoss', 2.0, 50.0, 0.5)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from openkws.training.losses.adams import AdaMSLoss
from openkws.training.losses.angular_distance_distribution import AngularDistanceDistributionLoss
from openkws.training.losses.angular_prototypical import AngularPrototypicalFCLoss, AngularPrototypicalLoss
from openkws.training.losses.asymmetric_proxy import AsymmetricProxyLoss
from openkws.training.losses.background import BackgroundNegativeLoss
from openkws.training.losses.base import MetricLoss
from openkws.training.losses.modality_adversarial import (
    GradientReversal,
    ModalityAdversarialLoss,
    grad_reverse,
)
from openkws.training.losses.proxy_bd import ProxyBDLoss
from openkws.training.losses.proxy_ms import ProxyMSLoss
from openkws.training.losses.proxy_nca import ProxyNCALoss
from openkws.training.losses.proxy_pair import ProxyPairLoss
from openkws.training.losses.relational_proxy import RelationalProxyLoss
from openkws.training.losses.sphereface2 import SphereFace2Loss
from openkws.training.losses.triplet import MultiViewTripletLoss, TripletLoss

LOSSES: dict[str, type[MetricLoss]] = {
    "asyp": AsymmetricProxyLoss,
    "proxy_nca": ProxyNCALoss,
    "proxy_bd": ProxyBDLoss,
    "proxy_ms": ProxyMSLoss,
    "triplet": TripletLoss,
    "mv_triplet": MultiViewTripletLoss,
    "adams": AdaMSLoss,
    "rpl": RelationalProxyLoss,
    "mal": ModalityAdversarialLoss,
    "sphereface2": SphereFace2Loss,
    "add": AngularDistanceDistributionLoss,
    "ap": AngularPrototypicalLoss,
    "apfc": AngularPrototypicalFCLoss,
}

# Losses with the proxy-family signature forward(audio_emb, proxies, labels).
PROXY_FAMILY: frozenset[str] = frozenset(
    {"asyp", "proxy_nca", "proxy_bd", "proxy_ms", "triplet", "mv_triplet", "adams", "ap", "apfc"}
)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered as ``name`` with ``kwargs``; unknown names list the valid ones.

    Example:
        >>> build_loss("proxy_ms", similarity="a").pos_similarity
        'a'
        >>> build_loss("asymmetric")
        Traceback (most recent call last):
        ...
        ValueError: unknown loss 'asymmetric'; valid names: adams, add, ap, apfc, asyp, mal, mv_triplet, proxy_bd, proxy_ms, proxy_nca, rpl, sphereface2, triplet
    """
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}") from None
    return cls(**kwargs)


__all__ = [
    "LOSSES",
    "PROXY_FAMILY",
    "build_loss",
    "AdaMSLoss",
    "AngularDistanceDistributionLoss",
    "AngularPrototypicalFCLoss",
    "AngularPrototypicalLoss",
    "AsymmetricProxyLoss",
    "BackgroundNegativeLoss",
    "GradientReversal",
    "MetricLoss",
    "ModalityAdversarialLoss",
    "MultiViewTripletLoss",
    "ProxyBDLoss",
    "ProxyMSLoss",
    "ProxyNCALoss",
    "ProxyPairLoss",
    "RelationalProxyLoss",
    "SphereFace2Loss",
    "TripletLoss",
    "grad_reverse",
]
