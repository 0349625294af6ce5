"""Kontext's reference images: conditioning datasets (SimpleTuner's dataset_type = "conditioning")
and the image datasets that name them in conditioning_data. The pairing of files by name is the
scan's (core/datasets.py); these rules look at the config alone."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from .base import problem_at, rule

KONTEXT = "kontext"


@rule
def _conditioning(p: Project) -> list[Problem]:
    out: list[Problem] = []
    flavour = p.model.model_flavour
    active = [(i, d) for i, d in enumerate(p.datasets) if not d.disabled]
    images = [(i, d) for i, d in active if d.dataset_type != "conditioning"]
    conditioning = {str(d.id): (i, d) for i, d in active if d.dataset_type == "conditioning"}
    named: set[str] = set()

    for i, d in images:
        if not d.conditioning_data:
            continue
        key = f"datasets[{i}].conditioning_data"
        target = str(d.conditioning_data)
        named.add(target)
        if target in conditioning:
            continue
        other = next((j for j, e in enumerate(p.datasets) if str(e.id) == target), None)
        if other is None:
            known = ", ".join(f"`{c}`" for c in conditioning) or "none"
            out.append(
                problem_at(
                    p,
                    f"dataset `{d.id}`: conditioning_data names `{target}`, but no dataset has that id "
                    f"(conditioning datasets: {known})",
                    key,
                    fix=f'add [[datasets]] with id = "{target}", dataset_type = "conditioning" and '
                    "instance_data_dir = <folder of reference images>, or fix the id",
                )
            )
        elif p.datasets[other].disabled:
            out.append(
                problem_at(
                    p,
                    f"dataset `{d.id}`: its conditioning dataset `{target}` is disabled",
                    f"datasets[{other}].disabled",
                    fix=f"set disabled = false on `{target}`, or remove conditioning_data from `{d.id}`",
                )
            )
        else:
            out.append(
                problem_at(
                    p,
                    f"dataset `{d.id}`: conditioning_data names `{target}`, which is an image dataset, "
                    "not a conditioning one (it would also train as images)",
                    f"datasets[{other}].dataset_type",
                    fix=f'set dataset_type = "conditioning" on `{target}`',
                )
            )

    for cid, (i, d) in conditioning.items():
        if d.type == "huggingface":
            out.append(
                problem_at(
                    p,
                    f"dataset `{cid}`: a conditioning dataset must be a local folder (references are paired "
                    "with their edit images by file name)",
                    f"datasets[{i}].type",
                    fix='use type = "local" with instance_data_dir = <folder of reference images>',
                )
            )
        if d.conditioning_data:
            out.append(
                problem_at(
                    p,
                    f"dataset `{cid}`: conditioning_data belongs on the image dataset, not on the "
                    "conditioning dataset it names",
                    f"datasets[{i}].conditioning_data",
                    fix=f'remove it here and set conditioning_data = "{cid}" on your image dataset',
                )
            )
        if cid not in named:
            out.append(
                problem_at(
                    p,
                    f"dataset `{cid}` is a conditioning dataset that no image dataset names: it is not used",
                    f"datasets[{i}].dataset_type",
                    severity="warning",
                    fix=f'set conditioning_data = "{cid}" on the image dataset it belongs to',
                )
            )

    paired = [(i, d) for i, d in images if d.conditioning_data and str(d.conditioning_data) in conditioning]
    if flavour == KONTEXT and images and not any(d.conditioning_data for _, d in images):
        i = images[0][0]
        out.append(
            problem_at(
                p,
                'model_flavour = "kontext" edits a reference image, but no image dataset has one: '
                "without references it would train plain text-to-image",
                f"datasets[{i}].conditioning_data",
                fix='add [[datasets]] with id = "my-references", dataset_type = "conditioning" and '
                "instance_data_dir = <reference images, named like the edits>, then set "
                'conditioning_data = "my-references" on this dataset',
            )
        )
    elif flavour != KONTEXT and paired:
        i, d = paired[0]
        out.append(
            problem_at(
                p,
                f"dataset `{d.id}` has reference images (conditioning_data), but model_flavour = "
                f'"{flavour}" takes none: they are ignored and the images train text-to-image',
                f"datasets[{i}].conditioning_data",
                severity="warning",
                fix='set model_flavour = "kontext" to train edits, or remove conditioning_data',
            )
        )
    return out
