"""Validation images during training.

Every prompt (validation_prompt, named "validation", plus the [validation.prompts] library)
at every validation_resolution, with the configured distilled guidance, real CFG (> 1 adds
a pass with the negative prompt), steps and seed. The text encoders are gone by then: the
prompts' embeddings were put in the text cache with the captions, so sampling needs only
the transformer and the VAE.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .quiet import only_transformers_errors

DEFAULT_PROMPT_NAME = "validation"


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str


def prompts(project: Any) -> list[Prompt]:
    v = project.validation
    out = []
    if v.validation_prompt:
        out.append(Prompt(DEFAULT_PROMPT_NAME, v.validation_prompt))
    out += [Prompt(name, text) for name, text in (v.prompts or {}).items()]
    return out


def resolutions(project: Any) -> list[tuple[int, int]]:
    out = []
    for item in project.validation.validation_resolution:
        w, h = item.lower().split("x")
        out.append((int(w), int(h)))
    return out


def real_cfg(project: Any) -> bool:
    return float(project.validation.validation_guidance_real) > 1.0


def texts_to_cache(project: Any) -> list[str]:
    """Every text sampling will need embeddings for."""
    texts = [p.text for p in prompts(project)]
    if real_cfg(project):
        texts.append(project.validation.validation_negative_prompt or "")
    return texts


def possible(project: Any) -> bool:
    """There is something to render (on request, even with validation_steps = 0)."""
    return bool(prompts(project)) and bool(resolutions(project))


def enabled(project: Any) -> bool:
    """Validation runs on its own every validation_steps (and at the end)."""
    return project.validation.validation_steps > 0 and possible(project)


class Validator:
    def __init__(self, project: Any, models: Any, text_cache: Any, run_dir: Path, device: torch.device):
        self.project = project
        self.models = models
        self.text_cache = text_cache
        self.run_dir = Path(run_dir)
        self.device = device

    def _embeds(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        t5, pooled, _mask = self.text_cache.load(text)
        dtype = self.models.weight_dtype
        return t5[None].to(self.device, dtype), pooled[None].to(self.device, dtype)

    def run(
        self, step: int, transformer: Any, *, autocast: Any = contextlib.nullcontext, suffix: str = ""
    ) -> tuple[list[str], float]:
        """Render every prompt x resolution; returns (paths relative to the run folder, seconds).
        ``suffix`` goes after the prompt name (the EMA's images end in -ema)."""
        with only_transformers_errors():
            from diffusers import FluxPipeline

        v = self.project.validation
        started = time.monotonic()
        offloaded = self.project.memory.enable_model_cpu_offload
        if offloaded:  # the VAE waits on the CPU between validations
            self.models.vae.to(self.device)
        pipe = FluxPipeline(
            scheduler=copy.deepcopy(self.models.scheduler),
            vae=self.models.vae,
            text_encoder=None,
            tokenizer=self.models.tokenizer,
            text_encoder_2=None,
            tokenizer_2=self.models.tokenizer_2,
            transformer=transformer,
        )
        pipe.set_progress_bar_config(disable=True)
        negative: dict[str, Any] = {}
        if real_cfg(self.project):
            neg_t5, neg_pooled = self._embeds(v.validation_negative_prompt or "")
            negative = {
                "negative_prompt_embeds": neg_t5,
                "negative_pooled_prompt_embeds": neg_pooled,
                "true_cfg_scale": float(v.validation_guidance_real),
            }
        folder = self.run_dir / "validation" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        # No dropout while sampling. Only the dropout layers are switched: a whole-model eval()
        # would also send bitsandbytes' NF4 layers down their CPU inference path.
        dropouts = [m for m in transformer.modules() if isinstance(m, torch.nn.Dropout) and m.training]
        for m in dropouts:
            m.eval()
        try:
            # Sampling must not move the training RNG: a resumed run has to see the same numbers.
            with torch.random.fork_rng(devices=_cuda_devices(self.device)), torch.no_grad(), autocast():
                for prompt in prompts(self.project):
                    t5, pooled = self._embeds(prompt.text)
                    for w, h in resolutions(self.project):
                        image = pipe(
                            prompt_embeds=t5,
                            pooled_prompt_embeds=pooled,
                            height=h,
                            width=w,
                            num_inference_steps=int(v.validation_num_inference_steps),
                            guidance_scale=float(v.validation_guidance),
                            generator=torch.Generator("cpu").manual_seed(int(v.validation_seed)),
                            max_sequence_length=t5.shape[1],
                            **negative,
                        ).images[0]
                        path = folder / f"{prompt.name}{suffix}-{w}x{h}.png"
                        image.save(path)
                        written.append(str(path.relative_to(self.run_dir)))
        finally:
            for m in dropouts:
                m.train()
            if offloaded:
                self.models.vae.to("cpu")
        return written, round(time.monotonic() - started, 3)


def _cuda_devices(device: torch.device) -> list[Any]:
    return [device] if getattr(device, "type", "") == "cuda" else []
