"""Export a diffusers-format Flux LoRA in the kohya / ComfyUI key format.

ComfyUI (and kohya's sd-scripts) name LoRA layers after the original BFL checkpoint, where
q, k and v are one fused Linear (``double_blocks.N.img_attn.qkv``) and a single block's
q, k, v and MLP input are one ``linear1``. diffusers splits those, so fusing is needed:

- the fused ``lora_down`` stacks the parts' ``lora_A`` (rank k*r),
- the fused ``lora_up`` is block-diagonal in the parts' ``lora_B`` (zeros elsewhere),
- ``alpha`` is multiplied by k so that alpha/rank, the LoRA scale, is unchanged.

That is exactly the same function of the input (no approximation), and it is the "sparse"
layout diffusers' ``_convert_kohya_flux_lora_to_diffusers`` recognises and splits back into the
original parts, so a round trip gives the same weights (up to diffusers folding alpha/rank
into ``lora_A``). A part the LoRA does not adapt (``proj_mlp`` under the ``all`` preset) is a
zero block; it comes back as a zero LoRA.

The mapping is the inverse of diffusers' converter (diffusers/loaders/lora_conversion_utils.py).
"""

from __future__ import annotations

import re

import torch

__all__ = ["DOUBLE_BLOCK", "SINGLE_BLOCK", "to_comfyui"]

# diffusers layer inside transformer_blocks.N -> (kohya layer inside double_blocks_N, part index)
DOUBLE_BLOCK: dict[str, tuple[str, int | None]] = {
    "attn.to_q": ("img_attn_qkv", 0),
    "attn.to_k": ("img_attn_qkv", 1),
    "attn.to_v": ("img_attn_qkv", 2),
    "attn.to_out.0": ("img_attn_proj", None),
    "attn.add_q_proj": ("txt_attn_qkv", 0),
    "attn.add_k_proj": ("txt_attn_qkv", 1),
    "attn.add_v_proj": ("txt_attn_qkv", 2),
    "attn.to_add_out": ("txt_attn_proj", None),
    "ff.net.0.proj": ("img_mlp_0", None),
    "ff.net.2": ("img_mlp_2", None),
    "ff_context.net.0.proj": ("txt_mlp_0", None),
    "ff_context.net.2": ("txt_mlp_2", None),
    "norm1.linear": ("img_mod_lin", None),
    "norm1_context.linear": ("txt_mod_lin", None),
}

# diffusers layer inside single_transformer_blocks.N -> (kohya layer inside single_blocks_N, part)
SINGLE_BLOCK: dict[str, tuple[str, int | None]] = {
    "attn.to_q": ("linear1", 0),
    "attn.to_k": ("linear1", 1),
    "attn.to_v": ("linear1", 2),
    "proj_mlp": ("linear1", 3),
    "proj_out": ("linear2", None),
    "norm.linear": ("modulation_lin", None),
}

_FUSED_PARTS = {"img_attn_qkv": 3, "txt_attn_qkv": 3, "linear1": 4}
_MLP_RATIO = 4  # Flux: the MLP is 4x the hidden width (proj_mlp's output in linear1)

_KEY = re.compile(
    r"^(?:transformer\.)?(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)\.lora_([AB])\.weight$"
)


def _part_out_features(kohya: str, part: int, hidden: int) -> int:
    return hidden * _MLP_RATIO if (kohya == "linear1" and part == 3) else hidden


def to_comfyui(state_dict: dict[str, torch.Tensor], *, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """kohya-format tensors (``lora_unet_...lora_down/lora_up/alpha``) from a diffusers LoRA.

    ``alpha``: the LoRA's alpha (the scale is alpha/rank); None means alpha = rank.
    Raises ValueError for a layer that has no place in the BFL layout.
    """
    # (block kind, block index, kohya layer) -> {part: (A, B)}
    groups: dict[tuple[str, int, str], dict[int | None, tuple[torch.Tensor, torch.Tensor]]] = {}
    pending: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = _KEY.match(key)
        if not m:
            raise ValueError(f"no ComfyUI name for LoRA layer {key!r}")
        blocks, index, layer, ab = m[1], int(m[2]), m[3], m[4]
        table = DOUBLE_BLOCK if blocks == "transformer_blocks" else SINGLE_BLOCK
        if layer not in table:
            raise ValueError(f"no ComfyUI name for LoRA layer {key!r}")
        pending.setdefault((blocks, index, layer), {})[ab] = value
    for (blocks, index, layer), ab in pending.items():
        table = DOUBLE_BLOCK if blocks == "transformer_blocks" else SINGLE_BLOCK
        kohya, part = table[layer]
        kind = "double_blocks" if blocks == "transformer_blocks" else "single_blocks"
        groups.setdefault((kind, index, kohya), {})[part] = (ab["A"], ab["B"])

    out: dict[str, torch.Tensor] = {}
    for (kind, index, kohya), parts in sorted(groups.items()):
        name = f"lora_unet_{kind}_{index}_{kohya}"
        if None in parts:
            down, up = parts[None]
            k = 1
        else:
            down, up, k = _fuse(kohya, parts)
        rank = down.shape[0]
        layer_alpha = (float(alpha) if alpha is not None else rank / k) * k
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(layer_alpha, dtype=torch.float32)
    return out


def _fuse(
    kohya: str, parts: dict[int | None, tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    k = _FUSED_PARTS[kohya]
    some_a, some_b = next(iter(parts.values()))
    rank, hidden = some_a.shape
    ranks = {a.shape[0] for a, _ in parts.values()}
    if len(ranks) != 1:
        raise ValueError(f"{kohya}: the fused parts have different ranks {sorted(ranks)}")
    outs = [_part_out_features(kohya, i, hidden) for i in range(k)]
    down = torch.zeros(k * rank, hidden, dtype=some_a.dtype)
    up = torch.zeros(sum(outs), k * rank, dtype=some_b.dtype)
    row = 0
    for i in range(k):
        if i in parts:
            a, b = parts[i]
            if b.shape[0] != outs[i]:
                raise ValueError(f"{kohya} part {i}: {b.shape[0]} outputs, expected {outs[i]}")
            down[i * rank : (i + 1) * rank] = a
            up[row : row + outs[i], i * rank : (i + 1) * rank] = b
        row += outs[i]
    return down, up, k
