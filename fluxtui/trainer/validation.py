"""Validation images during training.

Every prompt (validation_prompt, named "validation", plus the [validation.prompts] library
and the user_prompt_library file) at every validation_resolution, with the configured
distilled guidance, real CFG (> 1 adds a pass with the negative prompt, optionally rescaled),
the T5 attention mask when the run trained with it, steps and seed. The text encoders are gone by then: the
prompts' embeddings were put in the text cache with the captions, so sampling needs only
the transformer and the VAE. The VAE is loaded at the first validation, waits on the CPU in
between, and decodes in tiles when the estimate says a whole image would need more than the
training step (core/estimate_stages.vae_decode_plan).

Kontext edits a reference, so it validates as SimpleTuner does for edit models: the first
KONTEXT_SAMPLES paired images of each image dataset (by path), each edit's caption as the
prompt and its reference as FluxKontextPipeline's image, at every validation_resolution;
the image is named after the edit (<name>-<WxH>.png).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fluxtui.core import prompt_library

from . import assistant
from .guided import GuidedTransformer
from .quiet import only_transformers_errors

DEFAULT_PROMPT_NAME = "validation"
KONTEXT_SAMPLES = 4  # per image dataset: SimpleTuner's num_eval_images default


@dataclass(frozen=True)
class Reference:
    """A Kontext validation sample: the edit's name and caption, the reference to edit."""

    name: str
    caption: str
    image: Path


def kontext_references(entries: Any) -> list[Reference]:
    """The first KONTEXT_SAMPLES paired images of each dataset (sorted by path)."""
    out: list[Reference] = []
    per_dataset: dict[int, int] = {}
    for e in sorted((e for e in entries if e.reference is not None), key=lambda e: (e.dataset, str(e.image))):
        if per_dataset.get(e.dataset, 0) >= KONTEXT_SAMPLES:
            continue
        per_dataset[e.dataset] = per_dataset.get(e.dataset, 0) + 1
        out.append(Reference(Path(e.image).stem, e.captions[0], Path(e.reference)))
    return out


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
    if v.user_prompt_library:  # checked by core.rules before the run
        library = prompt_library.load(project.resolve(v.user_prompt_library))
        out += [Prompt(prompt_library.file_name(name), text) for name, text in library.items()]
    return out


def resolutions(project: Any) -> list[tuple[int, int]]:
    out = []
    for item in project.validation.validation_resolution:
        w, h = item.lower().split("x")
        out.append((int(w), int(h)))
    return out


def real_cfg(project: Any) -> bool:
    return float(project.validation.validation_guidance_real) > 1.0


def masked_sampling(project: Any, flavour: str) -> bool:
    """Sample with the T5 padding masked: when the run trains masked, and always for libreflux,
    which was itself trained that way."""
    return bool(project.training.flux_attention_masked_training) or flavour == "libreflux"


def texts_to_cache(project: Any) -> list[str]:
    """Every text sampling will need embeddings for."""
    texts = [p.text for p in prompts(project)]
    if real_cfg(project):
        texts.append(project.validation.validation_negative_prompt or "")
    return texts


def possible(project: Any, references: list[Reference] | None = None) -> bool:
    """There is something to render (on request, even with validation_steps = 0). With
    `references` (Kontext) those are what is rendered, not the prompts."""
    return bool(references if references is not None else prompts(project)) and bool(resolutions(project))


def enabled(project: Any, references: list[Reference] | None = None) -> bool:
    """Validation runs on its own every validation_steps (and at the end)."""
    return project.validation.validation_steps > 0 and possible(project, references)


class Validator:
    def __init__(
        self,
        project: Any,
        models: Any,
        text_cache: Any,
        run_dir: Path,
        device: torch.device,
        references: list[Reference] | None = None,
    ):
        self.project = project
        self.references = references  # Kontext: render these edits instead of the prompts
        self.models = models
        self.text_cache = text_cache
        self.run_dir = Path(run_dir)
        self.device = device
        self._vae_module: Any = None

    def _embeds_and_mask(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t5, pooled, mask = self.text_cache.load(text)
        dtype = self.models.weight_dtype
        return t5[None].to(self.device, dtype), pooled[None].to(self.device, dtype), mask[None].to(self.device)

    def run(
        self, step: int, transformer: Any, *, autocast: Any = contextlib.nullcontext, suffix: str = ""
    ) -> tuple[list[str], float]:
        """Render every prompt x resolution; returns (paths relative to the run folder, seconds).
        ``suffix`` goes after the prompt name (the EMA's images end in -ema)."""
        with only_transformers_errors():
            from diffusers import FluxKontextPipeline, FluxPipeline

        v = self.project.validation
        started = time.monotonic()
        guided = GuidedTransformer(  # real CFG, its rescale and the T5 mask are done in there
            transformer,
            masked=masked_sampling(self.project, self.models.flavour),
            cfg_scale=float(v.validation_guidance_real),
            rescale=float(v.validation_guidance_rescale),
        )
        vae = self._vae().to(self.device)
        pipeline_class = FluxPipeline if self.references is None else FluxKontextPipeline
        pipe = pipeline_class(
            scheduler=copy.deepcopy(self.models.scheduler),
            vae=vae,
            text_encoder=None,
            tokenizer=self.models.tokenizer,
            text_encoder_2=None,
            tokenizer_2=self.models.tokenizer_2,
            transformer=guided,
        )
        pipe.set_progress_bar_config(disable=True)
        negative = self._embeds_and_mask(v.validation_negative_prompt or "") if real_cfg(self.project) else None
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
            with (
                torch.random.fork_rng(devices=_cuda_devices(self.device)),
                torch.no_grad(),
                autocast(),
                assistant.for_validation(transformer),  # SimpleTuner's inference strength (0: off)
            ):
                for prompt, reference in self._samples():
                    t5, pooled, mask = self._embeds_and_mask(prompt.text)
                    guided.prompt(mask, negative)
                    for w, h in resolutions(self.project):
                        image = pipe(
                            **self._reference_inputs(reference, w, h),
                            prompt_embeds=t5,
                            pooled_prompt_embeds=pooled,
                            height=h,
                            width=w,
                            num_inference_steps=int(v.validation_num_inference_steps),
                            guidance_scale=float(v.validation_guidance),
                            generator=torch.Generator("cpu").manual_seed(int(v.validation_seed)),
                            max_sequence_length=t5.shape[1],
                        ).images[0]
                        path = folder / f"{prompt.name}{suffix}-{w}x{h}.png"
                        image.save(path)
                        written.append(str(path.relative_to(self.run_dir)))
        finally:
            for m in dropouts:
                m.train()
            vae.to("cpu")  # the VAE waits on the CPU: training never holds it
            del pipe
            _release()
        return written, round(time.monotonic() - started, 3)

    def _samples(self) -> list[tuple[Prompt, Reference | None]]:
        if self.references is None:
            return [(p, None) for p in prompts(self.project)]
        return [(Prompt(r.name, r.caption), r) for r in self.references]

    @staticmethod
    def _reference_inputs(reference: Reference | None, w: int, h: int) -> dict[str, Any]:
        """FluxKontextPipeline's image: the reference at the output's size, as training cut it
        (no snapping to Kontext's preferred sizes, and max_area keeps w x h)."""
        if reference is None:
            return {}
        from PIL import Image, ImageOps

        with Image.open(reference.image) as im:
            image = ImageOps.exif_transpose(im).convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        return {"image": image, "max_area": w * h, "_auto_resize": False}

    def _vae(self) -> Any:
        if self._vae_module is None:
            from fluxtui.core.estimate import vae_decode_plan

            from . import models
            from .caches import configure_vae

            models.load_vae(self.models, self.project, device=torch.device("cpu"), log=lambda _msg: None)
            self._vae_module, self.models.vae = self.models.vae, None
            plan = vae_decode_plan(self.project)
            configure_vae(
                self._vae_module,
                tiling=self.project.memory.vae_enable_tiling or plan.tile_px is not None,
                tile_px=plan.tile_px,
            )
        return self._vae_module


def _release() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cuda_devices(device: torch.device) -> list[Any]:
    return [device] if getattr(device, "type", "") == "cuda" else []
