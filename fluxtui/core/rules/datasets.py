"""The [[datasets]] entries' options (the files themselves are scanned in core/datasets.py)."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from ..schema import options_in
from .base import (
    _missing_package,
    problem_at,
    rule,
)


@rule
def _datasets(p: Project) -> list[Problem]:
    out = []
    enabled = [(i, d) for i, d in enumerate(p.datasets) if not d.disabled]
    active = [(i, d) for i, d in enabled if d.dataset_type != "conditioning"]  # what trains
    if not p.datasets:
        out.append(
            problem_at(
                p,
                "there is no [[datasets]] table: nothing to train on",
                "datasets",
                fix='add [[datasets]] with id = "my-images" and instance_data_dir = "datasets/my-images"',
            )
        )
    elif enabled and not active:
        i = enabled[0][0]
        out.append(
            problem_at(
                p,
                "every active dataset is a conditioning dataset (references): there are no images to train on",
                f"datasets[{i}].dataset_type",
                fix='add the image dataset the references belong to, with conditioning_data = "<this id>"',
            )
        )
    elif not active:
        out.append(
            problem_at(
                p,
                "every dataset is disabled: nothing to train on",
                "datasets[0].disabled",
                fix="set disabled = false on at least one dataset",
            )
        )
    elif all(d.is_regularisation_data for _, d in active):
        i = active[0][0]
        out.append(
            problem_at(
                p,
                "every active dataset is regularisation data: there is nothing to learn from",
                f"datasets[{i}].is_regularisation_data",
                fix="add a dataset of your subject, or set is_regularisation_data = false",
            )
        )
    elif sum(d.probability for _, d in active) <= 0:
        i = active[0][0]
        out.append(
            problem_at(
                p,
                "every active dataset has probability 0: no batch can be drawn",
                f"datasets[{i}].probability",
                fix="set probability = 1.0",
            )
        )
    for i, d in enabled:
        out += _dataset_options(p, i, d)
    return out


def _dataset_type(p: Project, i: int, d) -> list[Problem]:
    """Options that belong to the other type of dataset; what type = "huggingface" allows."""
    key = f"datasets[{i}]"
    out = []
    for opt in options_in("datasets"):
        if opt.dataset_types and d.type not in opt.dataset_types and f"{key}.{opt.key}" in p.explicit:
            kinds = " or ".join(f'type = "{t}"' for t in opt.dataset_types)
            out.append(
                problem_at(
                    p,
                    f'{opt.key} applies only to {kinds}; this dataset is type = "{d.type}"',
                    f"{key}.{opt.key}",
                    also=(f"{key}.type",),
                    severity="warning",
                    fix=f"remove {opt.key}, or set {kinds}",
                )
            )
    if d.type == "huggingface":
        if d.caption_strategy not in ("huggingface", "instanceprompt"):
            out.append(
                problem_at(
                    p,
                    f'caption_strategy = "{d.caption_strategy}" reads files next to images; a Hugging Face dataset '
                    "has its captions in caption_column",
                    f"{key}.caption_strategy",
                    fix='use caption_strategy = "huggingface" (caption_column) or "instanceprompt"',
                )
            )
        if d.mask_data_dir:
            out.append(
                problem_at(
                    p,
                    "mask_data_dir is not supported for a Hugging Face dataset (masks are matched by file name)",
                    f"{key}.mask_data_dir",
                    fix="remove mask_data_dir, or use a local folder of images and masks",
                )
            )
        out += _missing_package(p, "datasets", f"{key}.type", 'type = "huggingface"', "use a local image folder")
    elif d.caption_strategy == "huggingface":
        out.append(
            problem_at(
                p,
                'caption_strategy = "huggingface" reads caption_column of a Hugging Face dataset; this is a folder',
                f"{key}.caption_strategy",
                also=(f"{key}.type",),
                fix='use caption_strategy = "textfile" (or "filename"), or type = "huggingface" with dataset_name',
            )
        )
    return out


def _dataset_options(p: Project, i: int, d) -> list[Problem]:
    key = f"datasets[{i}]"
    out = _dataset_type(p, i, d)
    if d.caption_strategy == "instanceprompt" and not d.instance_prompt:
        out.append(
            problem_at(
                p,
                'caption_strategy = "instanceprompt" needs instance_prompt',
                f"{key}.instance_prompt",
                also=(f"{key}.caption_strategy",),
                fix='add instance_prompt = "a photo of sks dog" to this dataset',
            )
        )
    elif d.instance_prompt and d.caption_strategy != "instanceprompt":
        out.append(
            problem_at(
                p,
                f'instance_prompt is ignored with caption_strategy = "{d.caption_strategy}"',
                f"{key}.instance_prompt",
                severity="warning",
                fix='set caption_strategy = "instanceprompt", or remove instance_prompt',
            )
        )
    r, kind = d.resolution, d.resolution_type
    if kind == "area" and r > 16:
        out.append(
            problem_at(
                p,
                f'resolution {r:g} with resolution_type = "area" means {r:g} megapixels',
                f"{key}.resolution_type",
                also=(f"{key}.resolution",),
                fix='use resolution_type = "pixel_area" for an edge in pixels, or resolution = 1.0 (megapixels)',
            )
        )
    elif kind != "area" and r < 64:
        hint = (
            'use resolution_type = "area" for megapixels'
            if 0 < r <= 16
            else "use at least 64 px (Flux works in 64-px steps)"
        )
        out.append(
            problem_at(
                p,
                f'resolution {r:g} px with resolution_type = "{kind}" is too small to train on',
                f"{key}.resolution",
                also=(f"{key}.resolution_type",),
                fix=hint,
            )
        )
    elif kind == "area" and r <= 0:
        out.append(problem_at(p, "resolution must be above 0", f"{key}.resolution", fix="e.g. resolution = 1.0"))
    big, down = d.maximum_image_size, d.target_downsample_size
    if big and not down:
        out.append(
            problem_at(
                p,
                "maximum_image_size has no effect without target_downsample_size",
                f"{key}.target_downsample_size",
                also=(f"{key}.maximum_image_size",),
                severity="warning",
                fix=f"add target_downsample_size (at most {big:g}, same unit as resolution)",
            )
        )
    elif down and not big:
        out.append(
            problem_at(
                p,
                "target_downsample_size has no effect without maximum_image_size",
                f"{key}.maximum_image_size",
                also=(f"{key}.target_downsample_size",),
                severity="warning",
                fix="add maximum_image_size (images above it are downsampled first)",
            )
        )
    elif big and down and down > big:
        out.append(
            problem_at(
                p,
                f"target_downsample_size ({down:g}) is above maximum_image_size ({big:g}): that would upscale",
                f"{key}.target_downsample_size",
                severity="warning",
                fix=f"use target_downsample_size <= {big:g}",
            )
        )
    return out


@rule
def _crop_aspect(p: Project) -> list[Problem]:
    out = []
    for i, d in enumerate(p.datasets):
        if d.disabled:
            continue
        key = f"datasets[{i}]"
        if d.crop and d.crop_aspect in ("random", "closest") and not d.crop_aspect_buckets:
            out.append(
                problem_at(
                    p,
                    f'crop_aspect = "{d.crop_aspect}" picks from crop_aspect_buckets, which is empty',
                    f"{key}.crop_aspect_buckets",
                    also=(f"{key}.crop_aspect",),
                    fix='add crop_aspect_buckets = [0.75, 1.0, 1.5] to this dataset, or crop_aspect = "preserve"',
                )
            )
        elif not d.crop and f"{key}.crop_aspect" in p.explicit and d.crop_aspect != "square":
            out.append(
                problem_at(
                    p,
                    f'crop_aspect = "{d.crop_aspect}" applies only with crop = true; without it every image '
                    "keeps its own aspect (as in SimpleTuner)",
                    f"{key}.crop_aspect",
                    also=(f"{key}.crop",),
                    severity="warning",
                    fix="set crop = true to crop, or remove crop_aspect",
                )
            )
    return out
