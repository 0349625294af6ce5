"""VRAM estimate (and a rough time per step) from project.toml alone: no torch, nothing loaded.

Memory is counted from the Flux architecture's layer shapes (`flux_arch`) per stage of a run,
in the order the trainer goes through them:

- `load_models`: the transformer, CLIP, T5 and VAE placed on the GPU one after the other, each
  quantised as it arrives (block by block on the accelerator; `quantize_via = "cpu"` sends
  it quantised). `random_weights` on the accelerator builds all four in full precision there.
- `cache_latents`: VAE encoding `vae_batch_size` images next to the resident transformer (the
  text encoders wait on the CPU with `offload_during_startup`).
- `cache_text`: CLIP and T5 encoding captions, T5_ENCODE_BATCH at a time.
- `train`: transformer weights, LoRA weights, gradients and optimizer state, activations
  (tokens = (H/16)*(W/16) + T5 tokens, batch, checkpointing, TREAD), runtime overhead.
- `validate`: sampling at `validation_resolution` and decoding with the VAE.

The total is the largest stage. The `train` stage is what SPEC.md's figures describe (they are
steady-state training peaks; the quickstart they come from warns that startup may need more).

`Estimate.suggestions()` re-estimates the project with concrete changes applied (precision,
resolution, optimizer, offload...) and returns the ones that fit, with their new totals.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .flux_arch import (
    QUANTISE_EXCLUDE,
    T5_ENCODE_BATCH,
    FluxConfig,
    Linear,
    ModelSize,
    Pipeline,
    block_of,
    pipeline_for_flavour,
    transformer_linears,
    transformer_other_params,
)
from .lora_targets import lora_target_linears

__all__ = ["STAGES", "Estimate", "Suggestion", "estimate", "lora_param_count", "with_changes"]

GIB = 1024**3
STAGES = ("load_models", "cache_latents", "cache_text", "train", "validate")

# =========================================================================================
# Calibration: every number the estimate rests on, and where it comes from.
# =========================================================================================
#
# Measured on this project's stack (diffusers 0.42.1, peft 0.21, torch 2.13 CPU, bf16): the
# bytes autograd keeps per token for one full-width block with a rank-16 LoRA on its
# attention, counted with torch.autograd.graph.saved_tensors_hooks (storages deduplicated,
# weights excluded), divided by hidden size x 2 bytes: values per token per hidden unit.
DOUBLE_BLOCK_SAVED = 18.1
SINGLE_BLOCK_SAVED = 16.1
# A checkpointed block keeps only its input (one hidden vector per token); the backward pass
# recomputes one block at a time and holds its gradients next to its activations.
CHECKPOINT_SAVED = 1.0
BACKWARD_WORKSPACE = 1.0  # the recomputed block's gradients, as a multiple of its activations
IO_SAVED = 4.0  # embedders, rotary tables, norm_out/proj_out and the loss, per token (estimate)
ALLOCATOR_FACTOR = 1.3  # the caching allocator's slack on activations (reserved vs allocated)
# Inference transients, measured as peak RSS growth (VmHWM reset first) on a CPU in bf16:
# FLUX VAE (83.8 M params) at 512x512 px, batch 1: encode 1280, decode 2112 bytes per pixel;
# T5-XXL-width layers at 512 tokens: 58.7 MB per caption (slope from batch 8 to 16), i.e.
# 3.5 bytes per attention score (heads x tokens^2); rounded up for CUDA's fp32 softmax copy.
VAE_ENCODE_BYTES_PER_PIXEL = 1300
VAE_DECODE_BYTES_PER_PIXEL = 2150
T5_BYTES_PER_SCORE = 4.0
VAE_TILE_PIXELS = 1024 * 1024  # diffusers tiles the FLUX VAE (sample_size 1024) only above this
# CUDA context, cuBLAS/cuDNN workspaces: nvidia-smi shows it, torch's allocator counters don't.
CUDA_CONTEXT_GIB = 0.5
# "pixel" resolution fixes the shorter edge: an aspect bucket can hold more pixels than a
# square. Assume 3:2 buckets unless every image is cropped square (crop = true, crop_aspect
# "square"); without crop each image keeps its own aspect.
PIXEL_BUCKET_AREA = 1.5
#
# Fitted to SPEC.md's seed figures (from SimpleTuner's Flux quickstart: rank-16 LoRA on all
# targets, batch 1, checkpointing on; treated as 512 px): bf16 ~30G, int8 ~18G, int4 ~13G,
# nf4 ~9G, int2 ~9G, lowest 9090 MiB with nf4 + Lion 8-bit paged. What the counted parts
# above do not explain (allocator pools, dequantisation buffers, kernel workspaces) is a
# share of the resident transformer's bf16 size, per quantisation backend. One value serves
# int8/int4/int2 (within 7% of each seed); nf4's seed was measured on the leanest settings
# (quantize_via cpu, 8-bit paged optimizer) and needs much less. The quanto and bf16 seeds
# possibly included 1024 px datasets, so these two are on the generous side at 512 px.
# Replace with `fluxtui probe` measurements when a GPU run gives them.
RUNTIME_OVERHEAD_SHARE = {"none": 0.25, "quanto": 0.20, "bnb": 0.055}
#
# Speed seed (SPEC.md): nf4, batch 1, checkpointing on, RTX 4090: 1.4 s/step at 512 px
# (1024 + 512 tokens), 3.5 s/step at 1024 px (4096 + 512 tokens); a line through both.
SPEED_SEED = ((1536, 1.4), (4608, 3.5))
CHECKPOINTING_SLOWDOWN = 1.2  # SPEC: checkpointing costs ~20%
GROUP_OFFLOAD_SLOWDOWN = 1.5  # streaming weights every step (rough)
# A combined suggestion only takes a change that saves at least this much.
MEANINGFUL_SAVING_GIB = 0.25
MEANINGFUL_SAVING_SHARE = 0.02


# =========================================================================================
# Weight formats
# =========================================================================================


@dataclass(frozen=True)
class WeightFormat:
    backend: str  # "none", "quanto", "bnb"
    bytes_per_weight: float
    group: int = 0  # weights per scale group; 0 = one scale per output channel
    group_bytes: float = 0.0  # bytes of scale (and shift) per group or per output channel


FORMATS = {
    "no_change": WeightFormat("none", 2.0),
    "int8-quanto": WeightFormat("quanto", 1.0, 0, 2.0),  # int8 + a bf16 scale per output channel
    "fp8-quanto": WeightFormat("quanto", 1.0, 0, 2.0),
    "int4-quanto": WeightFormat("quanto", 0.5, 128, 4.0),  # groups of 128: bf16 scale + shift
    "int2-quanto": WeightFormat("quanto", 0.25, 128, 4.0),
    # bitsandbytes Params4bit: absmax per 64 weights, double-quantised to 8 bit (+ fp32 per 256)
    "nf4-bnb": WeightFormat("bnb", 0.5, 64, 1.0 + 4.0 / 256),
}
# From the mildest to the harshest on quality: the order suggestions try them in.
PRECISION_ORDER = ("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "nf4-bnb", "int2-quanto")

# Bytes of optimizer state per trainable parameter. fluxtui keeps LoRA weights in fp32
# (trainer/lora.py), so optimi's Kahan buffer (bf16 params only) is never allocated.
OPTIMIZER_STATE = {
    "adamw_bf16": (8.0, "optimi AdamW: 2 fp32 states"),
    "optimi-stableadamw": (8.0, "optimi StableAdamW: 2 fp32 states"),
    "optimi-lion": (4.0, "optimi Lion: 1 fp32 state"),
    "torch-adamw": (8.0, "torch AdamW: 2 fp32 states"),
    "bnb-adamw8bit": (2.0 + 8.0 / 256, "bitsandbytes AdamW8bit: 2 8-bit states"),
    "bnb-lion8bit-paged": (1.0 + 4.0 / 256, "bitsandbytes PagedLion8bit: 1 8-bit state, may page to CPU"),
    "prodigy": (16.0, "Prodigy: 4 fp32 states (moments, s, p0)"),
}
LORA_BYTES = 4  # fp32 adapter weights, and their gradients


def _base_bytes(project: Any) -> int:
    return 4 if project.model.base_model_default_dtype == "fp32" else 2


def _format(precision: str, base_bytes: int) -> WeightFormat:
    fmt = FORMATS[precision]
    if precision == "no_change" and base_bytes == 4:
        return WeightFormat("none", 4.0)
    return fmt


def _excluded(name: str) -> bool:
    return name in QUANTISE_EXCLUDE


def _linear_bytes(lin: Linear, fmt: WeightFormat, base_bytes: int, quantise: bool) -> float:
    bias = lin.out_features * base_bytes if lin.bias else 0
    if not quantise or fmt.backend == "none":
        return lin.weight_params * (fmt.bytes_per_weight if fmt.backend == "none" else base_bytes) + bias
    w = lin.weight_params * fmt.bytes_per_weight
    scales = (
        lin.out_features * fmt.group_bytes
        if fmt.group == 0
        else math.ceil(lin.weight_params / fmt.group) * fmt.group_bytes
    )
    return w + scales + bias


@lru_cache(maxsize=64)
def _transformer_bytes(cfg: FluxConfig, precision: str, base_bytes: int) -> tuple[float, float, dict[str, float]]:
    """(total bytes, bf16-equivalent bytes, bytes per block or top-level module)."""
    fmt = _format(precision, base_bytes)
    per_part: dict[str, float] = {}
    total = bf16 = 0.0
    for lin in transformer_linears(cfg):
        b = _linear_bytes(lin, fmt, base_bytes, quantise=not _excluded(lin.name))
        part = block_of(lin.name) or "top"
        per_part[part] = per_part.get(part, 0.0) + b
        total += b
        bf16 += lin.params * 2
    for name, n in transformer_other_params(cfg).items():
        part = block_of(name) or "top"
        per_part[part] = per_part.get(part, 0.0) + n * base_bytes
        total += n * base_bytes
        bf16 += n * 2
    return total, bf16, per_part


def _component_bytes(size: ModelSize, precision: str, base_bytes: int) -> float:
    fmt = _format(precision, base_bytes)
    if fmt.backend == "none":
        return size.params * fmt.bytes_per_weight
    scales = size.linear_params / fmt.group * fmt.group_bytes if fmt.group else 0.0
    return size.linear_params * fmt.bytes_per_weight + scales + size.other_params * base_bytes


# =========================================================================================
# LoRA
# =========================================================================================


def _factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """LyCORIS' split of a dimension into m x n with m <= n, m as close to `factor` as divides."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    if factor < 0:
        factor = dimension
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def _lokr_params(lin: Linear, rank: int, factor: int) -> int:
    out_m, out_n = _factorization(lin.out_features, factor)
    in_m, in_n = _factorization(lin.in_features, factor)
    w1 = out_m * in_m
    full_w2 = rank >= max(out_n, in_n) / 2  # LyCORIS keeps w2 whole when the rank would not save
    w2 = out_n * in_n if full_w2 else rank * (out_n + in_n)
    return w1 + w2


def lora_param_count(
    preset: str, rank: int, cfg: FluxConfig | None = None, *, lora_type: str = "standard", lokr_factor: int = 16
) -> tuple[int, int]:
    """(trainable parameters, adapted layers) for a preset on the Flux architecture `cfg`.

    Standard LoRA adds rank x (in + out) per layer (no bias); LoKr (lycoris) is approximated
    with LyCORIS' factorisation.
    """
    layers = lora_target_linears(preset, cfg) if cfg is not None else lora_target_linears(preset)
    if lora_type == "lycoris":
        return sum(_lokr_params(lin, rank, lokr_factor) for lin in layers), len(layers)
    return sum(rank * (lin.in_features + lin.out_features) for lin in layers), len(layers)


# =========================================================================================
# The project, read once
# =========================================================================================


def _dataset_pixels(ds: Any) -> float:
    r = float(ds.resolution)
    if ds.resolution_type == "area":
        return r * 1e6
    px = r * r
    if ds.resolution_type == "pixel" and not (ds.crop and ds.crop_aspect == "square"):
        px *= PIXEL_BUCKET_AREA
    return px


def _side(pixels: float) -> int:
    return round(math.sqrt(pixels))


def _validation_pixels(project: Any) -> float:
    best = 0.0
    for res in project.validation.validation_resolution:
        m = re.fullmatch(r"(\d+)x(\d+)", res)
        if m:
            best = max(best, int(m[1]) * int(m[2]))
    return best


@dataclass
class _Plan:
    """Everything the stages need, derived from the project once."""

    project: Any
    pipe: Pipeline
    base_bytes: int
    act_bytes: int
    precision: str
    pixels: float
    image_tokens: int
    text_tokens: int
    batch: int
    lora_params: int
    lora_layers: int
    notes: list[str]

    @property
    def cfg(self) -> FluxConfig:
        return self.pipe.transformer


def _plan(project: Any) -> _Plan:
    m, t = project.model, project.training
    pipe = pipeline_for_flavour(m.model_flavour)
    base = _base_bytes(project)
    notes: list[str] = []
    active = project.active_datasets
    if active:
        pixels = max(_dataset_pixels(d) for d in active)
    else:
        pixels = 1024 * 1024
        notes.append("no active dataset: assumed 1024x1024 px")
    if any(d.resolution_type == "pixel" and not (d.crop and d.crop_aspect == "square") for d in active):
        notes.append(f'"pixel" resolution with aspect buckets: assumed buckets up to 3:2 (x{PIXEL_BUCKET_AREA} area)')
    text = int(m.tokenizer_max_length or pipe.t5_max_length)
    lc = project.lora
    params, layers = lora_param_count(
        lc.flux_lora_target,
        int(lc.lora_rank),
        pipe.transformer,
        lora_type=lc.lora_type,
        lokr_factor=int(lc.lokr_factor),
    )
    if lc.lora_type == "lycoris":
        notes.append("LoKr parameter count follows LyCORIS' factorisation (approximate)")
    if layers == 0:
        notes.append(f"flux_lora_target {lc.flux_lora_target!r} matches no layer of this model")
    if t.optimizer == "bnb-lion8bit-paged":
        notes.append("paged optimizer state can move to system RAM under pressure")
    mixed = t.mixed_precision in ("bf16", "fp16")
    return _Plan(
        project=project,
        pipe=pipe,
        base_bytes=base,
        act_bytes=2 if mixed else base,
        precision=m.base_model_precision,
        pixels=pixels,
        image_tokens=max(1, round(pixels / 256)),  # 8x VAE downsampling, then 2x2 patches
        text_tokens=text,
        batch=int(t.train_batch_size),
        lora_params=params,
        lora_layers=layers,
        notes=notes,
    )


def _routes(project: Any, num_blocks: int) -> list[tuple[int, int, float]]:
    """TREAD routes as (first block, last block, share of image tokens dropped)."""
    tread = project.training.tread_config or {}
    out = []
    for r in tread.get("routes", []):
        start, end = int(r["start_layer_idx"]), int(r["end_layer_idx"])
        start = start + num_blocks if start < 0 else start
        end = end + num_blocks if end < 0 else end
        if 0 <= start <= end < num_blocks:
            out.append((start, end, float(r["selection_ratio"])))
    return out


def _block_tokens(plan: _Plan) -> list[int]:
    """Tokens each block sees for one sample (TREAD drops image tokens inside its routes)."""
    cfg = plan.cfg
    tokens = [plan.text_tokens + plan.image_tokens] * cfg.num_blocks
    for start, end, ratio in _routes(plan.project, cfg.num_blocks):
        kept = plan.text_tokens + round(plan.image_tokens * (1 - ratio))
        for i in range(start, end + 1):
            tokens[i] = kept
    return tokens


# =========================================================================================
# Stages
# =========================================================================================


def _resident_transformer(plan: _Plan) -> tuple[float, float, str]:
    """(bytes on the GPU while training, their bf16-equivalent bytes, how they are held)."""
    total, bf16, per_part = _transformer_bytes(plan.cfg, plan.precision, plan.base_bytes)
    mem = plan.project.memory
    if not mem.enable_group_offload:
        return total, bf16, plan.precision
    blocks = [v for k, v in per_part.items() if k != "top"]
    stream = 2 if mem.group_offload_use_stream else 1  # the next group is prefetched
    if mem.group_offload_type == "leaf_level":
        layers = transformer_linears(plan.cfg)
        fmt = _format(plan.precision, plan.base_bytes)
        largest = max(_linear_bytes(lin, fmt, plan.base_bytes, True) for lin in layers)
        resident = stream * largest
        how = "group offload, leaf level"
    else:
        n = min(len(blocks), int(mem.group_offload_blocks_per_group) * stream)
        resident = per_part.get("top", 0.0) + n * max(blocks)
        how = f"group offload: {n} of {len(blocks)} blocks resident"
    return resident, bf16 * resident / total, f"{plan.precision}, {how}"


def _activations(plan: _Plan) -> tuple[float, str]:
    """Training activations for one step (bytes) and how they were counted."""
    cfg, t = plan.cfg, plan.project.training
    unit = cfg.hidden * plan.act_bytes  # bytes of one hidden vector
    interval = int(t.gradient_checkpointing_interval)
    tokens = _block_tokens(plan)
    saved = 0.0
    recompute = 0.0
    for i, n in enumerate(tokens):
        own = DOUBLE_BLOCK_SAVED if i < cfg.num_layers else SINGLE_BLOCK_SAVED
        checkpointed = t.gradient_checkpointing and i % interval == 0
        saved += (CHECKPOINT_SAVED if checkpointed else own) * n * unit
        full = own * n * unit
        recompute = max(recompute, full * ((1 + BACKWARD_WORKSPACE) if checkpointed else BACKWARD_WORKSPACE))
    io = IO_SAVED * (plan.text_tokens + plan.image_tokens) * unit
    per_sample = saved + recompute + io
    total = per_sample * plan.batch * ALLOCATOR_FACTOR
    n_tok = plan.text_tokens + plan.image_tokens
    if not t.gradient_checkpointing:
        how = "no checkpointing"
    elif interval == 1:
        how = "checkpointing every block"
    else:
        how = f"checkpointing every {interval}th block"
    routes = " + TREAD" if _routes(plan.project, cfg.num_blocks) else ""
    return total, f"{n_tok} tokens x batch {plan.batch}, {how}{routes}"


def _overhead(backend: str, bf16_bytes: float) -> float:
    return RUNTIME_OVERHEAD_SHARE[backend] * bf16_bytes


def _text_encoders(plan: _Plan) -> tuple[float, float]:
    m, b = plan.project.model, plan.base_bytes
    return (
        _component_bytes(plan.pipe.clip, m.text_encoder_1_precision, b),
        _component_bytes(plan.pipe.t5, m.text_encoder_2_precision, b),
    )


def _t5_activations(plan: _Plan, captions: int) -> float:
    """Inference transients of T5 encoding `captions` at once (eager attention scores dominate)."""
    t5, length = plan.pipe.t5, plan.text_tokens
    return captions * t5.heads * length * length * T5_BYTES_PER_SCORE


def _vae_width_scale(plan: _Plan) -> float:
    return plan.pipe.vae.width / 128  # the measured bytes/pixel are for the FLUX VAE's 128 channels


def _stage_load(plan: _Plan) -> dict[str, float]:
    """The worst moment of loading: the transformer, CLIP, T5 and the VAE arrive one after the
    other. On the accelerator each is quantised block by block as it arrives (trainer/quantise.py),
    so the moment holds what is quantised so far plus one block in full precision."""
    m, b = plan.project.model, plan.base_bytes
    t_q, _, per_part = _transformer_bytes(plan.cfg, plan.precision, b)
    t_full, _, full_parts = _transformer_bytes(plan.cfg, "no_change", b)
    clip_q, t5_q = _text_encoders(plan)
    clip, t5 = plan.pipe.clip, plan.pipe.t5
    clip_full = _component_bytes(clip, "no_change", b)
    t5_full = _component_bytes(t5, "no_change", b)
    vae = _component_bytes(plan.pipe.vae, "no_change", b)
    on_gpu = m.quantize_via == "accelerator"
    if m.random_weights and on_gpu:
        # random weights are born on the GPU in full precision, all four at once
        return {
            "transformer weights (full precision, random)": t_full,
            "text encoders": clip_full + t5_full,
            "VAE": vae,
            "CUDA context": _ctx(),
        }

    def arriving(quantised: float, unit_full: float, precision: str) -> float:
        # via=cpu the component arrives already quantised
        return quantised + unit_full if on_gpu and precision != "no_change" else quantised

    t_unit = max(full_parts[k] - per_part[k] for k in full_parts)
    steps = [
        {"transformer weights": arriving(t_q, t_unit, plan.precision)},
        {
            "transformer weights": t_q,
            "text encoders": arriving(clip_q, clip.largest_unit * b, m.text_encoder_1_precision),
        },
        {
            "transformer weights": t_q,
            "text encoders": clip_q + arriving(t5_q, t5.largest_unit * b, m.text_encoder_2_precision),
        },
        {"transformer weights": t_q, "text encoders": clip_q + t5_q, "VAE": vae},
    ]
    return {**max(steps, key=lambda s: sum(s.values())), "CUDA context": _ctx()}


def _ctx() -> float:
    return CUDA_CONTEXT_GIB * GIB


def _caching_transformer(plan: _Plan) -> float:
    mem = plan.project.memory
    if mem.enable_model_cpu_offload:
        return 0.0
    return _resident_transformer(plan)[0]


def _stage_cache_latents(plan: _Plan) -> dict[str, float]:
    p = plan.project
    mem = p.memory
    clip, t5 = _text_encoders(plan)
    vae = _component_bytes(plan.pipe.vae, "no_change", plan.base_bytes)
    per_image = min(plan.pixels, VAE_TILE_PIXELS) if mem.vae_enable_tiling else plan.pixels
    act = VAE_ENCODE_BYTES_PER_PIXEL * _vae_width_scale(plan) * per_image * int(p.training.vae_batch_size)
    act *= plan.base_bytes / 2
    encoders = 0.0 if (mem.offload_during_startup or mem.enable_model_cpu_offload) else clip + t5
    out = {"transformer weights": _caching_transformer(plan), "text encoders": encoders, "VAE": vae}
    out[f"VAE encoding ({int(p.training.vae_batch_size)} images)"] = act
    out["CUDA context"] = _ctx()
    return out


def _stage_cache_text(plan: _Plan) -> dict[str, float]:
    p = plan.project
    clip, t5 = _text_encoders(plan)
    captions = min(int(p.text_embeds.write_batch_size), T5_ENCODE_BATCH)
    if p.memory.enable_model_cpu_offload:
        encoders, vae = max(clip, t5), 0.0
    else:
        encoders, vae = clip + t5, _component_bytes(plan.pipe.vae, "no_change", plan.base_bytes)
    return {
        "transformer weights": _caching_transformer(plan),
        "text encoders": encoders,
        "VAE": vae,
        f"T5 encoding ({captions} captions at once)": _t5_activations(plan, captions),
        "CUDA context": _ctx(),
    }


def _lora_parts(plan: _Plan) -> tuple[float, float, float, str]:
    state, what = OPTIMIZER_STATE[plan.project.training.optimizer]
    n = plan.lora_params
    return n * LORA_BYTES, n * LORA_BYTES, n * state, what


def _stage_train(plan: _Plan) -> tuple[dict[str, float], dict[str, str]]:
    resident, bf16_equiv, how = _resident_transformer(plan)
    weights, grads, opt, opt_what = _lora_parts(plan)
    act, act_how = _activations(plan)
    backend = _format(plan.precision, plan.base_bytes).backend
    parts = {
        "transformer weights": resident,
        "LoRA weights": weights,
        "LoRA gradients": grads,
        "optimizer state": opt,
        "activations": act,
        "runtime overhead": _overhead(backend, bf16_equiv),
        "CUDA context": _ctx(),
    }
    lora_type = "LoKr" if plan.project.lora.lora_type == "lycoris" else "LoRA"
    details = {
        "transformer weights": f"{_params_text(plan.cfg)} params, {how}",
        "LoRA weights": f"{lora_type} {_count(plan.lora_params)} params on {plan.lora_layers} layers, fp32",
        "LoRA gradients": "fp32",
        "optimizer state": f"{plan.project.training.optimizer}: {opt_what}",
        "activations": act_how,
        "runtime overhead": f"allocator pools, dequantisation buffers ({backend}; fitted to SPEC figures)",
        "CUDA context": "context and library workspaces (outside torch's counters)",
    }
    return parts, details


def _stage_validate(plan: _Plan) -> dict[str, float] | None:
    v = plan.project.validation
    pixels = _validation_pixels(plan.project)
    if v.validation_steps == 0 or pixels == 0:
        return None
    resident, bf16_equiv, _ = _resident_transformer(plan)
    weights, _grads, opt, _ = _lora_parts(plan)
    cfg = plan.cfg
    cfg_batch = 2 if v.validation_guidance_real > 1 else 1
    tokens = plan.text_tokens + max(1, round(pixels / 256))
    unit = cfg.hidden * plan.act_bytes
    sampling = (max(DOUBLE_BLOCK_SAVED, SINGLE_BLOCK_SAVED) + IO_SAVED) * tokens * unit * cfg_batch
    decode_px = min(pixels, VAE_TILE_PIXELS) if plan.project.memory.vae_enable_tiling else pixels
    decode = VAE_DECODE_BYTES_PER_PIXEL * _vae_width_scale(plan) * decode_px * plan.act_bytes / 2
    backend = _format(plan.precision, plan.base_bytes).backend
    side = _side(pixels)
    return {
        "transformer weights": resident,
        "LoRA weights": weights,
        "optimizer state": opt,
        "VAE": _component_bytes(plan.pipe.vae, "no_change", plan.base_bytes),
        f"sampling and VAE decoding (~{side}x{side} px)": max(sampling, decode),
        "runtime overhead": _overhead(backend, bf16_equiv),
        "CUDA context": _ctx(),
    }


def _params_text(cfg: FluxConfig) -> str:
    from .flux_arch import transformer_param_count

    return _count(transformer_param_count(cfg))


def _count(n: int) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


def _seconds_per_step(plan: _Plan) -> float | None:
    """Rough: a line through SPEC's nf4 RTX 4090 seeds, scaled by tokens actually processed."""
    if plan.pipe.tiny:
        return None
    t, mem = plan.project.training, plan.project.memory
    tokens = _block_tokens(plan)
    effective = sum(tokens) / len(tokens) * plan.batch
    (x0, y0), (x1, y1) = SPEED_SEED
    seconds = y0 + (effective - x0) * (y1 - y0) / (x1 - x0)
    seconds = max(seconds, 0.1)
    if not t.gradient_checkpointing:
        seconds /= CHECKPOINTING_SLOWDOWN
    elif int(t.gradient_checkpointing_interval) > 1:
        share = 1 / int(t.gradient_checkpointing_interval)
        seconds *= (1 + (CHECKPOINTING_SLOWDOWN - 1) * share) / CHECKPOINTING_SLOWDOWN
    if mem.enable_group_offload:
        seconds *= GROUP_OFFLOAD_SLOWDOWN
    return seconds * int(t.gradient_accumulation_steps)


# =========================================================================================
# The result
# =========================================================================================


@dataclass(frozen=True)
class Suggestion:
    """Changes (dotted keys for `config.set_values`) and the estimate with them applied."""

    changes: dict[str, Any]
    total_gib: float
    fits: bool
    combined: bool = False  # several changes found together because no single one was enough

    def describe(self) -> str:
        return "; ".join(f"{key} = {_literal(value)}" for key, value in self.changes.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "total_gib": round(self.total_gib, 2),
            "fits": self.fits,
            "combined": self.combined,
        }


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class Estimate:
    """Per-stage memory in GiB; `breakdown` is the training stage's parts."""

    stages: dict[str, dict[str, float]]  # stage -> ordered part -> GiB
    details: dict[str, str]  # a training part -> what it counts
    transformer_params: int
    lora_params: int
    lora_layers: int
    image_tokens: int
    text_tokens: int
    resolution_px: int  # side of a square with the largest dataset's pixel count
    seconds_per_step: float | None  # rough; None for tiny-random
    notes: list[str] = field(default_factory=list)
    gpu_gb: float | None = None
    _project: Any = field(default=None, repr=False)

    @property
    def breakdown(self) -> dict[str, float]:
        return self.stages["train"]

    @property
    def stage_peaks(self) -> dict[str, float]:
        return {name: sum(parts.values()) for name, parts in self.stages.items()}

    @property
    def total_gib(self) -> float:
        return max(self.stage_peaks.values())

    @property
    def peak_stage(self) -> str:
        peaks = self.stage_peaks
        return max(peaks, key=lambda s: peaks[s])

    def torch_gib(self, stage: str = "train") -> float:
        """What torch.cuda.max_memory_reserved() should show for `stage`: the stage without the
        CUDA context, which torch's counters leave out (for `fluxtui probe`'s comparison)."""
        parts = self.stages[stage]
        return sum(v for k, v in parts.items() if k != "CUDA context")

    def fits(self, gpu_gb: float | None = None) -> bool:
        """Whether the largest stage fits a GPU of `gpu_gb` (its nominal size, e.g. 24)."""
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        if gpu is None:
            raise ValueError("fits() needs gpu_gb")
        return self.total_gib <= gpu

    def suggestions(self, gpu_gb: float | None = None, *, limit: int = 6) -> list[Suggestion]:
        """Concrete changes that make the project fit `gpu_gb`, each re-estimated.

        Single changes first, in the order that costs the least quality or speed; when no
        single change is enough, one combination built greedily (it may still not fit: its
        `fits` says so). Empty when the project already fits.
        """
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        if gpu is None:
            raise ValueError("suggestions() needs gpu_gb")
        if self._project is None or self.fits(gpu):
            return []
        singles: list[Suggestion] = []
        best = self.total_gib
        for changes in _candidates(self._project):
            est = estimate(with_changes(self._project, changes))
            # a harsher change is only worth listing when it saves more than the milder ones
            if est.total_gib < best - 0.05 and est.fits(gpu):
                singles.append(Suggestion(changes, est.total_gib, True))
                best = est.total_gib
        if singles:
            return singles[:limit]
        combo = _greedy(self._project, gpu)
        return [combo] if combo else []

    def to_json(self, gpu_gb: float | None = None) -> dict[str, Any]:
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        out: dict[str, Any] = {
            "total_gib": round(self.total_gib, 2),
            "peak_stage": self.peak_stage,
            "breakdown": {k: round(v, 3) for k, v in self.breakdown.items()},
            "stage_peaks": {k: round(v, 2) for k, v in self.stage_peaks.items()},
            "stages": {s: {k: round(v, 3) for k, v in parts.items()} for s, parts in self.stages.items()},
            "transformer_params": self.transformer_params,
            "lora_params": self.lora_params,
            "lora_layers": self.lora_layers,
            "image_tokens": self.image_tokens,
            "text_tokens": self.text_tokens,
            "resolution_px": self.resolution_px,
            "seconds_per_step_rough": None if self.seconds_per_step is None else round(self.seconds_per_step, 2),
            "notes": self.notes,
        }
        if gpu is not None:
            out["gpu_gb"] = gpu
            out["fits"] = self.fits(gpu)
            out["suggestions"] = [s.to_json() for s in self.suggestions(gpu)]
        return out


def estimate(project: Any, *, gpu_gb: float | None = None) -> Estimate:
    """Estimate the VRAM of training `project` (a checked `config.Project`)."""
    from .flux_arch import transformer_param_count

    plan = _plan(project)
    train, details = _stage_train(plan)
    stages = {
        "load_models": _stage_load(plan),
        "cache_latents": _stage_cache_latents(plan),
        "cache_text": _stage_cache_text(plan),
        "train": train,
    }
    validate = _stage_validate(plan)
    if validate is not None:
        stages["validate"] = validate
    gib = {s: {k: v / GIB for k, v in parts.items() if v > 0 or k == "CUDA context"} for s, parts in stages.items()}
    return Estimate(
        stages=gib,
        details=details,
        transformer_params=transformer_param_count(plan.cfg),
        lora_params=plan.lora_params,
        lora_layers=plan.lora_layers,
        image_tokens=plan.image_tokens,
        text_tokens=plan.text_tokens,
        resolution_px=_side(plan.pixels),
        seconds_per_step=_seconds_per_step(plan),
        notes=plan.notes,
        gpu_gb=gpu_gb,
        _project=project,
    )


# =========================================================================================
# Suggestions
# =========================================================================================


def with_changes(project: Any, changes: dict[str, Any]) -> Any:
    """A copy of `project` with dotted keys ("model.base_model_precision",
    "datasets[0].resolution") set; the original is untouched."""
    sections = {name: type(sec)(**dict(vars(sec))) for name, sec in project.sections.items()}
    datasets = [type(d)(**dict(vars(d))) for d in project.datasets]
    for dotted, value in changes.items():
        m = re.fullmatch(r"datasets\[(\d+)\]\.(\w+)", dotted)
        if m:
            setattr(datasets[int(m[1])], m[2], value)
        else:
            section, key = dotted.rsplit(".", 1)
            setattr(sections[section], key, value)
    return dataclasses.replace(project, sections=sections, datasets=datasets)


def _candidates(project: Any) -> list[dict[str, Any]]:
    """Single changes worth trying, mildest first."""
    m, t, mem = project.model, project.training, project.memory
    out: list[dict[str, Any]] = []
    quantised = {m.base_model_precision, m.text_encoder_1_precision, m.text_encoder_2_precision} - {"no_change"}
    if m.quantize_via == "accelerator" and quantised:
        out.append({"model.quantize_via": "cpu"})
    if int(t.vae_batch_size) > 1:
        out.append({"training.vae_batch_size": 1})
    if not mem.offload_during_startup:
        out.append({"memory.offload_during_startup": True})
    if m.text_encoder_2_precision in ("no_change", "int8-quanto", "fp8-quanto"):
        out.append(
            {
                "model.text_encoder_2_precision": "nf4-bnb"
                if m.text_encoder_2_precision != "no_change"
                else "int8-quanto"
            }
        )
    if m.base_model_default_dtype == "fp32":
        out.append({"model.base_model_default_dtype": "bf16"})
    if not t.gradient_checkpointing:
        out.append({"training.gradient_checkpointing": True, "training.gradient_checkpointing_interval": 1})
    elif int(t.gradient_checkpointing_interval) > 1:
        out.append({"training.gradient_checkpointing_interval": 1})
    train_px = max((_dataset_pixels(d) for d in project.active_datasets), default=1024 * 1024)
    if _validation_pixels(project) > train_px:
        side = _side(train_px)
        out.append({"validation.validation_resolution": [f"{side}x{side}"]})
    for opt in ("bnb-adamw8bit", "bnb-lion8bit-paged"):
        if OPTIMIZER_STATE[opt][0] < OPTIMIZER_STATE[t.optimizer][0]:
            out.append({"training.optimizer": opt})
    if int(t.train_batch_size) > 1:
        accum = int(t.train_batch_size) * int(t.gradient_accumulation_steps)
        out.append({"training.train_batch_size": 1, "training.gradient_accumulation_steps": accum})
    if project.lora.flux_lora_target == "all+ffs":
        out.append({"lora.flux_lora_target": "all"})
    precisions = _precision_candidates(project)
    out += precisions[:-1]  # the harshest precision (int2) comes after offload and resolution
    if not mem.enable_group_offload:
        change: dict[str, Any] = {"memory.enable_group_offload": True}
        if mem.enable_model_cpu_offload:
            change["memory.enable_model_cpu_offload"] = False  # the two cannot be combined
        out.append(change)
    for side in (768, 512):
        change = {}
        for i, d in enumerate(project.datasets):
            if not d.disabled and _dataset_pixels(d) > side * side * 1.01:
                change[f"datasets[{i}].resolution"] = (
                    round(side * side / 1e6, 4) if d.resolution_type == "area" else side
                )
        if change:
            out.append(change)
    out += precisions[-1:]
    if not mem.enable_model_cpu_offload and not mem.enable_group_offload:
        out.append({"memory.enable_model_cpu_offload": True})
    return out


def _precision_candidates(project: Any) -> list[dict[str, Any]]:
    m, t = project.model, project.training
    harsher = PRECISION_ORDER[PRECISION_ORDER.index(m.base_model_precision) + 1 :]
    out = []
    for precision in harsher:
        if FORMATS[precision].bytes_per_weight <= FORMATS[m.base_model_precision].bytes_per_weight:
            change: dict[str, Any] = {"model.base_model_precision": precision}
            if precision == "nf4-bnb" and t.torch_compile:
                change["training.torch_compile"] = False  # nf4 cannot be compiled
            if FORMATS[precision].backend == "quanto" and project.lora.lora_init_type == "loftq":
                change["lora.lora_init_type"] = "default"  # LoftQ cannot sit on a quanto base
            out.append(change)
    return out


def _greedy(project: Any, gpu: float) -> Suggestion | None:
    """Take the mildest change that still saves something worth having, again and again,
    until the project fits (or nothing helps any more)."""
    applied: dict[str, Any] = {}
    current = estimate(project)
    for _ in range(12):
        base = with_changes(project, applied)
        worth = max(MEANINGFUL_SAVING_GIB, MEANINGFUL_SAVING_SHARE * current.total_gib)
        for changes in _candidates(base):
            trial = estimate(with_changes(base, changes))
            if trial.total_gib <= current.total_gib - worth:
                applied.update(changes)
                current = trial
                break
        else:
            break
        if current.fits(gpu):
            break
    if not applied:
        return None
    return Suggestion(applied, current.total_gib, current.fits(gpu), combined=True)
