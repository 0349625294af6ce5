"""What the memory estimate rests on: the calibration numbers, weight formats, byte counts of
the Flux components, the LoRA's size, and the project read once into a plan. No torch.

core/estimate_stages.py turns these into GPU memory per stage, core/estimate_ram.py into
system RAM per stage, core/estimate.py into the result and the suggestions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .flux_arch import (
    QUANTISE_EXCLUDE,
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
from .lycoris_size import factorization

GIB = 1024**3
# In the order the trainer goes through them (trainer/loop.py, trainer/caches.py).
STAGES = ("cache_text", "cache_latents", "load_models", "train", "validate")

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
# When a whole image would need more than the training step, the trainer encodes one image at
# a time, then in tiles of this side (trainer/caches.configure_vae); tiles overlap by 25%.
VAE_SMALL_TILE_PX = 512
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


def _lokr_params(lin: Linear, rank: int, factor: int) -> int:
    out_m, out_n = factorization(lin.out_features, factor)
    in_m, in_n = factorization(lin.in_features, factor)
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


def project_lora_size(project: Any, cfg: FluxConfig) -> tuple[int, int, str | None]:
    """(trainable parameters, adapted layers, a note or None) of the project's adapter on `cfg`:
    a lycoris_config file is sized from its algo, factor, linear_dim and apply_preset
    (core/lycoris_size.py); without one, LoRA or LoKr from lora_rank and lokr_factor."""
    lc = project.lora
    if lc.lora_type == "lycoris" and lc.lycoris_config:
        from . import lycoris_config, lycoris_size

        try:
            lyco = lycoris_config.read(project.resolve(lc.lycoris_config))
        except lycoris_config.LycorisConfigError:
            lyco = None  # validate names the problem; size the short form meanwhile
        if lyco is not None and not lycoris_config.problems(lyco):
            targets = [lin.name for lin in lora_target_linears(lc.flux_lora_target, cfg)]
            got = lycoris_size.size(lyco, cfg, targets)
            note = f"LyCORIS parameter count read from {lc.lycoris_config}"
            if not got.exact:
                note += f" ({', '.join(sorted(set(_algos(lyco)) - set(lycoris_size.EXACT_ALGOS)))} counted as LoRA)"
            return got.params, got.layers, note
    params, layers = lora_param_count(
        lc.flux_lora_target, int(lc.lora_rank), cfg, lora_type=lc.lora_type, lokr_factor=int(lc.lokr_factor)
    )
    note = "LoKr parameter count follows LyCORIS' factorisation" if lc.lora_type == "lycoris" else None
    return params, layers, note


def _algos(lyco: dict) -> list[str]:
    preset = lyco.get("apply_preset") or {}
    tables = [preset.get("module_algo_map") or {}, preset.get("name_algo_map") or {}]
    algo = str(lyco.get("algo", "lora")).lower()
    return [algo, *(str(c.get("algo", algo)).lower() for t in tables for c in t.values() if isinstance(c, dict))]


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
    params, layers, lora_note = project_lora_size(project, pipe.transformer)
    if lora_note:
        notes.append(lora_note)
    if layers == 0 and lora_note and lc.lycoris_config:
        notes.append(f"lycoris_config {lc.lycoris_config} matches no layer of this model")
    elif layers == 0:
        notes.append(f"flux_lora_target {lc.flux_lora_target!r} matches no layer of this model")
    if t.optimizer == "bnb-lion8bit-paged":
        notes.append("paged optimizer state can move to system RAM under pressure")
    mixed = t.mixed_precision in ("bf16", "fp16")
    image_tokens = max(1, round(pixels / 256))  # 8x VAE downsampling, then 2x2 patches
    if m.model_flavour == "kontext" and any(d.conditioning_data for d in active if d.dataset_type == "image"):
        image_tokens *= 2  # the reference's tokens follow the image's in the same sequence
        notes.append("Kontext: the reference adds as many tokens as the image (a loose one may add fewer)")
    return _Plan(
        project=project,
        pipe=pipe,
        base_bytes=base,
        act_bytes=2 if mixed else base,
        precision=m.base_model_precision,
        pixels=pixels,
        image_tokens=image_tokens,
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
# Parts the stages share
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


def _ctx() -> float:
    return CUDA_CONTEXT_GIB * GIB


def _lora_parts(plan: _Plan) -> tuple[float, float, float, str]:
    state, what = OPTIMIZER_STATE[plan.project.training.optimizer]
    n = plan.lora_params
    return n * LORA_BYTES, n * LORA_BYTES, n * state, what


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
