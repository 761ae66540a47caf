"""The training objective: one ``nn.Module`` that owns the model *and* every loss, so the optimizer
sees the losses' learnable parameters (AdaMS margins/scales, SphereFace2 weights and bias, modality
classifiers) and DDP wraps a single module::

    L = L_utt(AWE, AGWE)                                   # cfg.loss.utterance (proxy family)
      + lambda_phn * sum_l L_l(aligned audio per phoneme, phoneme-class proxies)   # AsyP + AdaMS
      + MAL_utt + MAL_phn       # classifiers: full gradient; encoders: -lambda_adv x it (GRL, DANN ramp)
      + w_kw * SphereFace2(AWE, training-vocabulary id)
      + w_rpl * RPL(AWE, AGWE of the clip's class) + w_add * ADD(AWE)
      + w_bg * Background(windows without a keyword, every proxy of the batch)

Proxy-family losses use ``reduction="mean"`` unless the config says otherwise: the paper sums over
the batch, but a mean keeps the lambda weights meaningful whatever K x M and the number of phonemes.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from openkws.text import load_inventory
from openkws.training.config import Config
from openkws.training.losses import LOSSES, BackgroundNegativeLoss, build_loss
from openkws.training.losses.background import acoustic_proxies, length_margins
from openkws.training.nets.kws_model import KWSModel
from openkws.training.nets.text_encoder import length_mask

FIRST_PHONE_ID = 3  # ids 0..2 are <pad>, <unk> and the word boundary: no phoneme-level class
SINGLE_VIEW = frozenset({"triplet", "ap"})  # audio-only losses: no gradient reaches the text encoder


def _make_loss(name: str, **kwargs: Any) -> nn.Module:
    cls = LOSSES.get(name)
    if cls is not None and "reduction" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("reduction", "mean")
    return build_loss(name, **kwargs)


class Objective(nn.Module):
    """Model + losses; ``forward(batch tensors) -> (total loss, {term: value})``."""

    def __init__(self, cfg: Config, model: KWSModel, num_words: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        lc = cfg.loss
        d = cfg.model.embedding_dim
        if lc.utterance in SINGLE_VIEW:
            raise ValueError(
                f"utterance loss {lc.utterance!r} ignores the text proxies, so the text encoder would never "
                f"train; use a cross-modal loss (e.g. mv_triplet instead of triplet, apfc instead of ap)"
            )
        self.utt = _make_loss(lc.utterance, **lc.utterance_kwargs)
        self.phn = nn.ModuleDict()
        if lc.phoneme.enabled:
            for name in lc.phoneme.losses:
                kw = {"num_classes": load_inventory().size} if name == "adams" else {}
                self.phn[name] = _make_loss(name, **kw)
        self.mal_utt = _make_loss("mal", dim=d, hidden=lc.mal.hidden) if lc.mal.utterance else None
        self.mal_phn = (
            _make_loss("mal", dim=d, hidden=lc.mal.hidden) if lc.mal.phoneme and lc.phoneme.enabled else None
        )
        self.kw = _make_loss("sphereface2", dim=d, num_classes=max(2, num_words)) if lc.keyword else None
        self.rpl = _make_loss("rpl", variant=lc.rpl) if lc.rpl else None
        self.add = _make_loss("add") if lc.add_weight > 0 else None
        self.background = (
            BackgroundNegativeLoss(lc.background_scale, lc.background_margin)
            if lc.background_weight > 0
            else None
        )
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1]: sets the gradient-reversal strength of the MAL losses.

        The modality classifiers take the full BCE gradient (they should win their game), and the
        encoders receive ``-lambda_adv(progress)`` times it through the reversal layer."""
        mal = self.cfg.loss.mal
        ramp = 1.0 if mal.schedule == "constant" else 2.0 / (1.0 + math.exp(-mal.gamma * progress)) - 1.0
        for m in (self.mal_utt, self.mal_phn):
            if m is not None:
                m.grl_lambda = mal.weight * ramp

    def losses(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"utt": self.utt}
        out.update({f"phn_{k}": v for k, v in self.phn.items()})
        for name in ("mal_utt", "mal_phn", "kw", "rpl", "add", "background"):
            m = getattr(self, name)
            if m is not None:
                out[name] = m
        return out

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        word_ids: torch.Tensor,
        text_ids: torch.Tensor,
        text_lengths: torch.Tensor,
        background_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``features``/``lengths`` hold the ``B = len(labels)`` keyword windows first, then (when
        ``background_mask [N, K]`` is given) ``N`` background windows, encoded in the same call."""
        lc = self.cfg.loss
        encoded = self.model.encode_audio(features, lengths)
        audio = encoded if background_mask is None else encoded.take(len(labels))
        proxy, phn = self.model.encode_text(text_ids, text_lengths)
        terms: dict[str, torch.Tensor] = {"utt": self.utt(audio.embedding, proxy, labels)}
        total = terms["utt"]
        if self.background is not None and background_mask is not None:
            margins = None
            if lc.background_short_bonus > 0:
                phones = (text_ids >= FIRST_PHONE_ID).sum(dim=1)
                margins = length_margins(
                    phones, lc.background_margin, lc.background_short_bonus, lc.background_short_phones
                )
            bg = encoded.embedding[len(labels) :]
            terms["background"] = self.background(bg, proxy, background_mask, margins)
            total = total + lc.background_weight * terms["background"]
            if lc.background_acoustic:
                # A TTS proxy is a mean of audio windows: hold background below the margin against
                # each keyword's mean window in the batch too, or audio-audio scores are left free.
                ac, present = acoustic_proxies(audio.embedding, labels, proxy.shape[0])
                terms["background_ac"] = self.background(bg, ac, background_mask & present, margins)
                total = total + lc.background_weight * terms["background_ac"]
        if len(self.phn) or self.mal_phn is not None:
            # text of each clip, aligned to the clip's frames by cross-attention
            ids, tl, phn_c = text_ids[labels], text_lengths[labels], phn[labels]
            aligned, _ = self.model.align(phn_c, tl, audio)
            valid = (length_mask(tl, ids.shape[1]) > 0) & (ids >= FIRST_PHONE_ID)
            a, t, cls = aligned[valid], phn_c[valid], ids[valid]
            if a.shape[0] > lc.phoneme.max_anchors:
                keep = torch.randperm(a.shape[0], device=a.device)[: lc.phoneme.max_anchors]
                a, t, cls = a[keep], t[keep], cls[keep]
            uniq, inv = torch.unique(cls, return_inverse=True)
            # one proxy per phoneme class: the mean text phoneme embedding of that class in the batch
            sums = torch.zeros(len(uniq), t.shape[1], dtype=t.dtype, device=t.device).index_add(0, inv, t)
            counts = torch.bincount(inv, minlength=len(uniq)).clamp_min(1).unsqueeze(1).to(t.dtype)
            phn_proxies = sums / counts
            phn_total = torch.zeros((), device=features.device)
            for name, loss in self.phn.items():
                kw = {"class_ids": uniq} if name == "adams" else {}
                terms[f"phn_{name}"] = loss(a, phn_proxies, inv, **kw)
                phn_total = phn_total + terms[f"phn_{name}"]
            total = total + lc.phoneme.weight * phn_total
            if self.mal_phn is not None:  # lambda_adv acts in the reversal layer (set_progress)
                terms["mal_phn"] = self.mal_phn(a, t)
                total = total + terms["mal_phn"]
        if self.mal_utt is not None:
            terms["mal_utt"] = self.mal_utt(audio.embedding, proxy)
            total = total + terms["mal_utt"]
        if self.kw is not None:
            terms["kw"] = self.kw(audio.embedding, word_ids)
            total = total + lc.keyword_weight * terms["kw"]
        if self.rpl is not None:
            terms["rpl"] = self.rpl(audio.embedding, proxy[labels], labels)
            total = total + lc.rpl_weight * terms["rpl"]
        if self.add is not None:
            terms["add"] = self.add(audio.embedding, labels)
            total = total + lc.add_weight * terms["add"]
        return total, terms
