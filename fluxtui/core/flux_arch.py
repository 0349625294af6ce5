"""The Flux.1 model family's layer shapes as plain data: no torch, nothing loaded.

`transformer_linears(cfg)` lists every nn.Linear of diffusers' FluxTransformer2DModel under its
real module name, in `named_modules()` order, with (in_features, out_features, bias);
`transformer_other_params(cfg)` holds the rest (the attention RMSNorm weights: LayerNorms in
Flux have no affine parameters). tests/test_estimate.py builds the real model on the meta
device and checks every name, shape and the total against these lists.

Full size: 11,901,408,320 parameters with the guidance embedder (dev, krea, kontext,
fluxbooru); schnell and libreflux have none (11,891,178,560).

The text encoders and the VAE are summarised by parameter counts, split into Linear weights
(what quantisation touches) and the rest (embeddings, norms, convolutions).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLIP_L",
    "FLUX_FULL",
    "FLUX_FULL_NO_GUIDANCE",
    "FLUX_TINY",
    "NO_GUIDANCE_FLAVOURS",
    "QUANTISE_EXCLUDE",
    "T5_ENCODE_BATCH",
    "T5_MAX_LENGTH",
    "T5_XXL",
    "TINY_CLIP",
    "TINY_T5",
    "TINY_VAE",
    "VAE_FULL",
    "FluxConfig",
    "Linear",
    "ModelSize",
    "Pipeline",
    "arch_for_flavour",
    "block_of",
    "pipeline_for_flavour",
    "transformer_linears",
    "transformer_other_params",
    "transformer_param_count",
]


@dataclass(frozen=True)
class Linear:
    name: str
    in_features: int
    out_features: int
    bias: bool

    @property
    def weight_params(self) -> int:
        return self.in_features * self.out_features

    @property
    def params(self) -> int:
        return self.weight_params + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class FluxConfig:
    """The FluxTransformer2DModel arguments that decide its shapes."""

    num_layers: int = 19  # double-stream blocks
    num_single_layers: int = 38
    num_attention_heads: int = 24
    attention_head_dim: int = 128
    joint_attention_dim: int = 4096  # T5 width
    pooled_projection_dim: int = 768  # CLIP width
    in_channels: int = 64  # 16 latent channels packed 2x2
    out_channels: int | None = None
    guidance_embeds: bool = True
    mlp_ratio: float = 4.0
    timestep_channels: int = 256  # sinusoidal projection fed to the time embedders

    @property
    def hidden(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden * self.mlp_ratio)

    @property
    def num_blocks(self) -> int:
        return self.num_layers + self.num_single_layers

    def diffusers_kwargs(self, axes_dims_rope: tuple[int, int, int] = (16, 56, 56)) -> dict:
        """FluxTransformer2DModel(**kwargs) for this shape (the trainer builds random weights
        from it, so the estimate and the model it measures share one declaration)."""
        return {
            "patch_size": 1,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "num_layers": self.num_layers,
            "num_single_layers": self.num_single_layers,
            "attention_head_dim": self.attention_head_dim,
            "num_attention_heads": self.num_attention_heads,
            "joint_attention_dim": self.joint_attention_dim,
            "pooled_projection_dim": self.pooled_projection_dim,
            "guidance_embeds": self.guidance_embeds,
            "axes_dims_rope": axes_dims_rope,
        }


FLUX_FULL = FluxConfig()
FLUX_FULL_NO_GUIDANCE = FluxConfig(guidance_embeds=False)
# A copy of fluxtui/trainer/tiny.py's "tiny" transformer (core never imports the trainer);
# tests/test_estimate.py checks that the two agree.
FLUX_TINY = FluxConfig(
    num_layers=1,
    num_single_layers=2,
    num_attention_heads=2,
    attention_head_dim=16,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    in_channels=64,
    guidance_embeds=True,
)

NO_GUIDANCE_FLAVOURS = frozenset({"schnell", "libreflux"})

# Top-level layers the trainer keeps in full precision when it quantises the transformer
# (fluxtui/trainer/quantise.py TRANSFORMER_EXCLUDE; a test checks they agree).
QUANTISE_EXCLUDE = ("proj_out", "x_embedder", "context_embedder", "norm_out.linear")


def arch_for_flavour(flavour: str) -> FluxConfig:
    if flavour == "tiny-random":
        return FLUX_TINY
    return FLUX_FULL_NO_GUIDANCE if flavour in NO_GUIDANCE_FLAVOURS else FLUX_FULL


def transformer_linears(cfg: FluxConfig = FLUX_FULL) -> list[Linear]:
    """Every nn.Linear of FluxTransformer2DModel(cfg), in named_modules() order."""
    h, mlp = cfg.hidden, cfg.mlp_hidden
    out = [
        Linear("time_text_embed.timestep_embedder.linear_1", cfg.timestep_channels, h, True),
        Linear("time_text_embed.timestep_embedder.linear_2", h, h, True),
    ]
    if cfg.guidance_embeds:
        out += [
            Linear("time_text_embed.guidance_embedder.linear_1", cfg.timestep_channels, h, True),
            Linear("time_text_embed.guidance_embedder.linear_2", h, h, True),
        ]
    out += [
        Linear("time_text_embed.text_embedder.linear_1", cfg.pooled_projection_dim, h, True),
        Linear("time_text_embed.text_embedder.linear_2", h, h, True),
        Linear("context_embedder", cfg.joint_attention_dim, h, True),
        Linear("x_embedder", cfg.in_channels, h, True),
    ]
    for i in range(cfg.num_layers):
        p = f"transformer_blocks.{i}"
        out += [
            Linear(f"{p}.norm1.linear", h, 6 * h, True),  # AdaLayerNormZero: shift/scale/gate x2
            Linear(f"{p}.norm1_context.linear", h, 6 * h, True),
            *(Linear(f"{p}.attn.{n}", h, h, True) for n in ("to_q", "to_k", "to_v", "to_out.0")),
            *(Linear(f"{p}.attn.{n}", h, h, True) for n in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")),
            Linear(f"{p}.ff.net.0.proj", h, mlp, True),
            Linear(f"{p}.ff.net.2", mlp, h, True),
            Linear(f"{p}.ff_context.net.0.proj", h, mlp, True),
            Linear(f"{p}.ff_context.net.2", mlp, h, True),
        ]
    for i in range(cfg.num_single_layers):
        p = f"single_transformer_blocks.{i}"
        out += [
            Linear(f"{p}.norm.linear", h, 3 * h, True),  # AdaLayerNormZeroSingle: shift/scale/gate
            Linear(f"{p}.proj_mlp", h, mlp, True),
            Linear(f"{p}.proj_out", h + mlp, h, True),  # attention output and MLP concatenated
            *(Linear(f"{p}.attn.{n}", h, h, True) for n in ("to_q", "to_k", "to_v")),
        ]
    out += [
        Linear("norm_out.linear", h, 2 * h, True),  # AdaLayerNormContinuous: scale/shift
        Linear("proj_out", h, cfg.out_channels or cfg.in_channels, True),
    ]
    return out


def transformer_other_params(cfg: FluxConfig = FLUX_FULL) -> dict[str, int]:
    """Parameters outside nn.Linear: the per-head RMSNorm weights of q and k."""
    d = cfg.attention_head_dim
    out: dict[str, int] = {}
    for i in range(cfg.num_layers):
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            out[f"transformer_blocks.{i}.attn.{n}"] = d
    for i in range(cfg.num_single_layers):
        for n in ("norm_q", "norm_k"):
            out[f"single_transformer_blocks.{i}.attn.{n}"] = d
    return out


def transformer_param_count(cfg: FluxConfig = FLUX_FULL) -> int:
    return sum(lin.params for lin in transformer_linears(cfg)) + sum(transformer_other_params(cfg).values())


def block_of(name: str) -> str | None:
    """ "transformer_blocks.3" for "transformer_blocks.3.attn.to_q"; None outside the blocks."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] in ("transformer_blocks", "single_transformer_blocks") and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return None


# --------------------------------------------------------------------------- other components


@dataclass(frozen=True)
class ModelSize:
    """A component summarised by parameter counts (enough for a memory estimate)."""

    name: str
    linear_params: int  # weights of nn.Linear layers: what quantisation shrinks
    other_params: int  # biases, embeddings, norms, convolutions: stay in bf16
    largest_unit: int = 0  # params of the biggest part a block-by-block quantiser moves at once
    width: int = 0  # d_model / hidden size; for the VAE the channels of its full-resolution stage
    heads: int = 0
    ffn: int = 0  # feed-forward width

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params


def _t5_encoder(vocab: int, d_model: int, d_ff: int, layers: int, heads: int, d_kv: int, buckets: int) -> ModelSize:
    """T5EncoderModel with gated-GELU feed-forward (T5 v1.1): no biases anywhere."""
    inner = heads * d_kv
    attn = 4 * d_model * inner  # q, k, v, o
    ff = 2 * d_model * d_ff + d_ff * d_model  # wi_0, wi_1, wo
    linear = layers * (attn + ff)
    other = vocab * d_model + layers * 2 * d_model + d_model + buckets * heads  # embedding, norms, rel. bias
    unit = max(attn + ff, vocab * d_model)  # one layer, or the token embedding
    return ModelSize("T5 encoder", linear, other, unit, width=d_model, heads=heads, ffn=d_ff)


def _clip_text(vocab: int, hidden: int, ffn: int, layers: int, positions: int) -> ModelSize:
    """CLIPTextModel: the Linear layers carry biases, counted with `other`."""
    linear = layers * (4 * hidden * hidden + 2 * hidden * ffn)
    biases = layers * (4 * hidden + ffn + hidden)
    norms = layers * 4 * hidden + 2 * hidden
    other = vocab * hidden + positions * hidden + biases + norms
    unit = max(4 * hidden * hidden + 2 * hidden * ffn, vocab * hidden)  # one layer, or the token embedding
    return ModelSize("CLIP text encoder", linear, other, unit, width=hidden, heads=hidden // 64, ffn=ffn)


# google/t5-v1_1-xxl encoder: 4,762,310,656 parameters (4.76 B).
T5_XXL = _t5_encoder(vocab=32128, d_model=4096, d_ff=10240, layers=24, heads=64, d_kv=64, buckets=32)
# openai/clip-vit-large-patch14 text tower: 123,060,480 parameters.
CLIP_L = _clip_text(vocab=49408, hidden=768, ffn=3072, layers=12, positions=77)
# FLUX.1 AutoencoderKL (16 latent channels): 83,819,683 parameters, 34,274,208 in the encoder.
VAE_FULL = ModelSize("VAE", 0, 83_819_683, width=128)

# The tiny-random pipeline's encoders and VAE (trainer/tiny.py "tiny"; checked by a test).
TINY_T5 = ModelSize("T5 encoder", 10_240, 9_360, 19_600, width=32, heads=2, ffn=64)
TINY_CLIP = ModelSize("CLIP text encoder", 8_192, 28_800, 37_000, width=32, heads=2, ffn=64)
TINY_VAE = ModelSize("VAE", 0, 86_331, width=8)

# T5 sequence length per flavour when `tokenizer_max_length` is not set.
T5_MAX_LENGTH = {"krea": 512, "dev": 512, "kontext": 512, "fluxbooru": 512, "libreflux": 512, "schnell": 256}
T5_MAX_LENGTH["tiny-random"] = 32

# T5-XXL at 512 tokens keeps ~59 MB of attention scores per caption while encoding, so the
# trainer encodes captions this many at a time (text_embeds.write_batch_size only sets the
# progress and stop-check grain); the estimate counts the same.
T5_ENCODE_BATCH = 4


@dataclass(frozen=True)
class Pipeline:
    """Everything of a flavour that takes memory, as shapes and counts."""

    transformer: FluxConfig
    clip: ModelSize
    t5: ModelSize
    vae: ModelSize
    t5_max_length: int
    tiny: bool = False


def pipeline_for_flavour(flavour: str) -> Pipeline:
    t5_len = T5_MAX_LENGTH.get(flavour, 512)
    if flavour == "tiny-random":
        return Pipeline(FLUX_TINY, TINY_CLIP, TINY_T5, TINY_VAE, t5_len, tiny=True)
    return Pipeline(arch_for_flavour(flavour), CLIP_L, T5_XXL, VAE_FULL, t5_len)
