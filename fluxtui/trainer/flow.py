"""Flow-matching math for Flux, as small pure functions a test can feed fixed tensors.

Conventions (SPEC.md, Training): the clean latent is x0, sigma in [0, 1] is the noise level,
noisy = (1 - sigma) * x0 + sigma * noise, and the model predicts the velocity
target = noise - x0. The transformer is given sigma itself; it multiplies by 1000 inside.
"""

from __future__ import annotations

import math

import torch

# Resolution-dependent shift (the same line FluxPipeline uses for sampling): mu grows
# linearly with the number of image tokens, from 0.5 at 256 tokens to 1.15 at 4096.
AUTO_SHIFT_M = (1.15 - 0.5) / (4096 - 256)
AUTO_SHIFT_B = 0.5 - 256 * AUTO_SHIFT_M

# schnell's fast schedule: it is sampled at only a few sigmas, most of them pure noise.
FAST_SCHEDULE_SIGMAS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25)


# -- timesteps ------------------------------------------------------------------------------


def logit_normal_sigmas(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """sigma = sigmoid(N(0, 1)): most samples near the middle, few at the ends."""
    return torch.sigmoid(torch.randn(batch, generator=generator))


def fast_schedule_sigmas(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    choices = torch.tensor(FAST_SCHEDULE_SIGMAS)
    return choices[torch.randint(len(choices), (batch,), generator=generator)]


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma' = s*sigma / (1 + (s-1)*sigma); s > 1 moves samples towards noise."""
    if shift == 1.0:
        return sigma
    return shift * sigma / (1 + (shift - 1) * sigma)


def auto_shift(image_seq_len: int) -> float:
    """s = exp(m * seq + b): ~1.88 at 512 px (1024 tokens), ~3.16 at 1024 px (4096 tokens)."""
    return math.exp(AUTO_SHIFT_M * image_seq_len + AUTO_SHIFT_B)


def fixed_shift(option: float | None, default: float = 3.0) -> float:
    """The shift flow_schedule_shift asks for: empty -> the default (3.0), 0 -> none (1.0:
    sigmas from the unshifted schedule, SimpleTuner's meaning of 0), else the value."""
    if option is None:
        return default
    return 1.0 if option == 0 else float(option)


def sample_sigmas(
    batch: int,
    *,
    image_seq_len: int,
    shift: float = 1.0,
    auto: bool = False,
    fast: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training sigmas for one batch, per the schedule options."""
    if fast:
        return fast_schedule_sigmas(batch, generator)
    sigma = logit_normal_sigmas(batch, generator)
    return shift_sigmas(sigma, auto_shift(image_seq_len) if auto else shift)


# -- the objective --------------------------------------------------------------------------


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = _per_sample(sigma, x0)
    return (1 - s) * x0 + s * noise


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def flow_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE in float32. With a weight (a loss mask broadcastable to pred), a weighted mean:
    masked-out regions neither count nor dilute the loss of the rest."""
    se = (pred.float() - target.float()) ** 2
    if weight is None:
        return se.mean()
    w = weight.float().expand_as(se)
    return (se * w).sum() / w.sum().clamp_min(1e-6)


# -- latents and ids ------------------------------------------------------------------------


def normalise_latents(raw: torch.Tensor, shift_factor: float, scaling_factor: float) -> torch.Tensor:
    """VAE latents to the transformer's scale: (vae(x) - shift) * scale."""
    return (raw - shift_factor) * scaling_factor


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)*(W/2), C*4]: each 2x2 patch becomes one token."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of pack_latents for latent height/width (not pixels)."""
    b, _, d = tokens.shape
    x = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def image_ids(latent_height: int, latent_width: int) -> torch.Tensor:
    """Position ids of the packed image tokens: [(H/2)*(W/2), 3] = (0, row, col)."""
    h, w = latent_height // 2, latent_width // 2
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def reference_ids(latent_height: int, latent_width: int) -> torch.Tensor:
    """Position ids of Kontext's packed reference tokens: (1, row, col). The first channel set
    to 1 is what tells the reference from the image (FluxKontextPipeline's image_ids)."""
    ids = image_ids(latent_height, latent_width)
    ids[:, 0] = 1
    return ids


def append_reference(
    hidden: torch.Tensor, ids: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kontext's transformer input: the noisy image tokens, then the clean reference latents
    [B, C, h, w] packed after them; the ids likewise. The prediction's first
    hidden.shape[1] tokens are the image's (target_tokens)."""
    tokens = pack_latents(reference).to(hidden.dtype)
    ref_ids = reference_ids(reference.shape[-2], reference.shape[-1]).to(ids.device, ids.dtype)
    return torch.cat([hidden, tokens], dim=1), torch.cat([ids, ref_ids], dim=0)


def target_tokens(pred: torch.Tensor, image_tokens: int) -> torch.Tensor:
    """The prediction for the image alone: reference tokens carry no target and no loss."""
    return pred[:, :image_tokens]


def text_ids(seq_len: int) -> torch.Tensor:
    return torch.zeros(seq_len, 3)


def guidance_vector(batch: int, value: float, has_guidance: bool) -> torch.Tensor | None:
    """Only guidance-distilled transformers (dev, krea) take a guidance input."""
    return torch.full((batch,), float(value)) if has_guidance else None


def training_guidance(
    batch: int,
    *,
    mode: str,
    value: float,
    low: float,
    high: float,
    has_guidance: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """constant: every sample gets `value`; random-range: each draws U(low, high)."""
    if not has_guidance:
        return None
    if mode == "random-range":
        return low + (high - low) * torch.rand(batch, generator=generator)
    return guidance_vector(batch, value, has_guidance)


def rescale_cfg(guided: torch.Tensor, positive: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale: blend the guided prediction with itself scaled to the positive one's
    standard deviation, phi * g * std(pos)/std(g) + (1 - phi) * g (per sample)."""
    if phi <= 0:
        return guided
    dims = tuple(range(1, guided.ndim))
    scaled = guided * (positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12))
    return phi * scaled + (1 - phi) * guided


def real_cfg(positive: torch.Tensor, negative: torch.Tensor, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance neg + s*(pos - neg), then the optional CFG rescale."""
    return rescale_cfg(negative + scale * (positive - negative), positive, rescale)


def joint_attention_mask(t5_mask: torch.Tensor, image_tokens: int) -> torch.Tensor:
    """Keys mask for Flux's joint attention over [text; image]: T5 padding is hidden,
    every image token is visible. Shape [B, 1, 1, L_text + N_image], bool."""
    b = t5_mask.shape[0]
    keep = torch.cat([t5_mask.bool(), torch.ones(b, image_tokens, dtype=torch.bool, device=t5_mask.device)], 1)
    return keep[:, None, None, :]


def mask_weights(mask: torch.Tensor, latent_channels: int) -> torch.Tensor:
    """A loss mask at latent resolution [B, 1, H, W] -> weights shaped like packed tokens."""
    b, _, h, w = mask.shape
    return pack_latents(mask.expand(b, latent_channels, h, w).contiguous())
