"""The transformer as FluxPipeline sees it while sampling validation images.

diffusers' FluxPipeline passes no T5 attention mask and knows no CFG rescale. This stand-in
forwards everything to the real transformer and adds both: the prompt's T5 padding is masked
in attention when the run trained that way (libreflux), and real CFG is done here (positive
and negative pass, then flow.real_cfg with validation_guidance_rescale), so the pipeline runs
with true_cfg_scale = 1.
"""

from __future__ import annotations

from typing import Any

import torch

from . import flow


class GuidedTransformer:
    def __init__(self, transformer: Any, *, masked: bool, cfg_scale: float = 1.0, rescale: float = 0.0):
        self._inner = transformer
        self.masked = masked
        self.cfg_scale = cfg_scale
        self.rescale = rescale
        self._mask: torch.Tensor | None = None
        self._negative: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    def __getattr__(self, name: str) -> Any:  # config, dtype, cache_context...: the real one's
        return getattr(self._inner, name)

    def prompt(
        self,
        mask: torch.Tensor | None,
        negative: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
    ) -> None:
        """The current prompt's T5 mask [1, L] and, for real CFG, the negative (t5, pooled, mask)."""
        self._mask = mask
        self._negative = negative

    def _attention(self, mask: torch.Tensor | None, image_tokens: int, batch: int) -> dict | None:
        if not self.masked or mask is None:
            return None
        return {"attention_mask": flow.joint_attention_mask(mask.expand(batch, -1), image_tokens)}

    def __call__(self, **kw: Any) -> tuple[torch.Tensor]:
        hidden = kw["hidden_states"]
        batch, tokens = hidden.shape[0], hidden.shape[1]
        kw["joint_attention_kwargs"] = self._attention(self._mask, tokens, batch) or kw.get("joint_attention_kwargs")
        positive = self._inner(**kw)[0]
        if self._negative is None or self.cfg_scale <= 1:
            return (positive,)
        t5, pooled, mask = self._negative
        neg_kw = dict(kw)
        neg_kw.update(
            encoder_hidden_states=t5.expand(batch, -1, -1),
            pooled_projections=pooled.expand(batch, -1),
            txt_ids=flow.text_ids(t5.shape[1]).to(kw["txt_ids"]),
            joint_attention_kwargs=self._attention(mask, tokens, batch),
        )
        negative = self._inner(**neg_kw)[0]
        return (flow.real_cfg(positive, negative, self.cfg_scale, self.rescale),)
