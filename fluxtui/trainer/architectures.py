"""The real FLUX.1 component configs, and random-weight models built from them.

``random_weights = true`` uses these to build a flavour's full-size architecture without a
download, so that VRAM and speed can be measured first. The configs are the ones published in
the black-forest-labs repos; schnell and its de-distilled offspring (libreflux) have no
guidance embedder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from fluxtui.core.flux_arch import FLUX_FULL, FLUX_FULL_NO_GUIDANCE, NO_GUIDANCE_FLAVOURS

__all__ = ["FULL_PARAMS", "architecture", "build_random", "build_random_part", "configs_for", "tiny_architecture"]


# FluxTransformer2DModel with guidance embeddings: 11,901,408,320 parameters.
FULL_PARAMS = 11_901_408_320


VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
}

CLIP: dict[str, Any] = {  # openai/clip-vit-large-patch14, text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

T5: dict[str, Any] = {  # google/t5-v1_1-xxl, encoder only
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "is_encoder_decoder": False,
    "use_cache": False,
    "tie_word_embeddings": False,
}


def architecture(flavour: str) -> dict[str, dict[str, Any]]:
    """The full-size component configs of ``flavour``."""
    full = FLUX_FULL_NO_GUIDANCE if flavour in NO_GUIDANCE_FLAVOURS else FLUX_FULL
    transformer = full.diffusers_kwargs()
    return {"transformer": transformer, "vae": dict(VAE), "clip": dict(CLIP), "t5": dict(T5)}


def tiny_architecture(size: str | dict[str, Any] = "tiny") -> dict[str, dict[str, Any]]:
    """The same structure at trainer.tiny's toy sizes (a SIZES name or entry): what
    tiny.build_tiny_flux builds, and what tests of the random-weights path use."""
    from .tiny import SIZES

    spec = SIZES[size] if isinstance(size, str) else size
    channels = tuple(spec["vae_channels"])
    clip, t5 = spec["clip"], spec["t5"]
    return {
        "transformer": dict(spec["transformer"]),
        "vae": dict(
            VAE,
            block_out_channels=channels,
            layers_per_block=1,
            norm_num_groups=spec["vae_groups"],
            sample_size=64,
        ),
        "clip": dict(
            CLIP,
            hidden_size=clip["hidden"],
            intermediate_size=clip["ffn"],
            projection_dim=clip["hidden"],
            num_hidden_layers=clip["layers"],
            num_attention_heads=clip["heads"],
        ),
        "t5": dict(
            T5,
            d_model=t5["d_model"],
            d_kv=t5["d_kv"],
            d_ff=t5["d_ff"],
            num_layers=t5["layers"],
            num_heads=t5["heads"],
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
        ),
    }


@contextlib.contextmanager
def _born_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Construct modules directly on ``device`` in ``dtype``.

    Parameters are allocated and initialised where they will live, so a full-size model never
    has a second copy in host RAM, and never an fp32 copy at all.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def _build_on(device: torch.device, dtype: torch.dtype, make: Callable[[], Any], seed: int) -> Any:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with _born_on(device, dtype):
            module = make()
    return module.eval()


def configs_for(arch: dict[str, dict[str, Any]], tokenizer: Any) -> dict[str, dict[str, Any]]:
    """The configs of the four components, keyed as in a pipeline (text_encoder = CLIP).

    ``tokenizer`` is the CLIP tokenizer in use: CLIP pools at its eos token, so the ids must agree.
    """
    return {
        "transformer": dict(arch["transformer"]),
        "vae": dict(arch["vae"]),
        "text_encoder": dict(
            arch["clip"],
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        "text_encoder_2": dict(arch["t5"], pad_token_id=0, eos_token_id=1, decoder_start_token_id=0),
    }


# Each component has its own seed, so building one alone gives the same weights as building all.
_SEEDS = {"transformer": 1, "vae": 2, "text_encoder": 3, "text_encoder_2": 4}


def build_random_part(configs: dict[str, dict[str, Any]], name: str, device: torch.device, dtype: torch.dtype) -> Any:
    """One random-weight component (a ``configs_for`` key) on ``device`` in ``dtype``."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    cfg = configs[name]
    makers: dict[str, Callable[[], Any]] = {
        "transformer": lambda: FluxTransformer2DModel(**cfg),
        "vae": lambda: AutoencoderKL(**cfg),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**cfg)),
        "text_encoder_2": lambda: T5EncoderModel(T5Config(**cfg)),
    }
    return _build_on(device, dtype, makers[name], _SEEDS[name])


def build_random(
    arch: dict[str, dict[str, Any]], device: torch.device, dtype: torch.dtype, tokenizer: Any
) -> dict[str, Any]:
    """Random-weight transformer, VAE, CLIP and T5 on ``device`` in ``dtype`` (deterministic)."""
    configs = configs_for(arch, tokenizer)
    return {name: build_random_part(configs, name, device, dtype) for name in _SEEDS}
