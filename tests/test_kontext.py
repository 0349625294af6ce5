"""Flux Kontext trains on image/reference pairs, SimpleTuner's way: a `[[datasets]]` entry with
dataset_type = "conditioning" holds the references, the image dataset names it in
conditioning_data, and files pair by name. The references' latents go after the image tokens
with ids (1, row, col); the loss is the image's alone; validation edits the first references
with FluxKontextPipeline. `validate` refuses what cannot work, fast and without torch."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from test_validate_caught_early import imported, validate
from trainer_support import check_well_formed, end_event, events, run_trainer

from fluxtui.core import config, datasets, workspace

REFS = """
[[datasets]]
id = "refs"
dataset_type = "conditioning"
instance_data_dir = "datasets/refs"
resolution = 64
resolution_type = "pixel"
"""


def kontext_workspace(
    path: Path, *, refs: int | None = None, settings: dict | None = None, table: str = REFS, flavour: str = "kontext"
) -> Path:
    """A demo workspace whose shapes dataset edits references (colour-inverted copies, same
    names): all of them, or the first `refs`."""
    ws = workspace.init(path, demo=True).root
    shapes = sorted((ws / "datasets" / "shapes").glob("*.png"))
    out = ws / "datasets" / "refs"
    out.mkdir()
    for src in shapes[:refs]:
        with Image.open(src) as im:
            ImageOps.invert(im.convert("RGB")).save(out / src.name)
    with open(ws / "project.toml", "a") as f:
        f.write(table)
    config.set_values(
        ws / "project.toml",
        {"model.model_flavour": flavour, "datasets[0].conditioning_data": "refs", **(settings or {})},
    )
    return ws


def checked(ws: Path) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = validate(ws)
    assert time.monotonic() - started < 10  # a fresh interpreter; no model, no torch
    assert "Traceback" not in result.stdout + result.stderr
    assert not imported(result.stderr) & {"torch", "diffusers", "peft"}
    return result


# -- training --------------------------------------------------------------------------------


def test_kontext_trains_on_pairs_and_validates_by_editing_references(tmp_path, tiny_model_dir):
    ws = kontext_workspace(
        tmp_path / "ws",
        refs=6,
        table=REFS + 'conditioning_type = "reference_strict"\n',
        settings={
            "model.pretrained_model_name_or_path": str(tiny_model_dir),
            "training.max_train_steps": 2,
            "training.train_batch_size": 2,
            "validation.validation_steps": 2,
        },
    )
    result = run_trainer(ws, "k1")
    assert result.returncode == 0, result.stdout
    evs = events(ws, "k1")
    check_well_formed(evs, "k1")
    assert end_event(evs)["status"] == "completed"
    assert "Kontext: 6 of 6 images edit a reference" in result.stdout

    from safetensors.torch import load_file

    cached = sorted((ws / "cache" / "vae" / "shapes").glob("*.safetensors"))
    assert len(cached) == 6  # the 18 images without a reference are left out
    for f in cached:
        t = load_file(f)
        assert t["reference"].shape == t["latent"].shape  # reference_strict: cut like its edit

    # validation: the first 4 edits (by name), each from its reference, named after the edit
    shots = [e for e in evs if e["type"] == "validation"]
    assert shots
    names = sorted(Path(p).name for p in shots[-1]["images"])
    first = sorted(p.stem for p in (ws / "datasets" / "refs").glob("*.png"))[:4]
    assert names == [f"{stem}-64x64.png" for stem in first]
    for name in names:
        with Image.open(ws / "outputs" / "k1" / "validation" / "step-2" / name) as im:
            assert im.size == (64, 64)
    card = (ws / "outputs" / "k1" / "lora" / "README.md").read_text()
    assert "FluxKontextPipeline" in card and 'image=load_image("reference.png")' in card


def test_loose_references_train_at_their_own_size(tmp_path, tiny_model_dir):
    table = REFS  # conditioning_type unset: reference_loose, SimpleTuner's default
    ws = kontext_workspace(
        tmp_path / "ws",
        refs=2,
        table=table,
        settings={
            "model.pretrained_model_name_or_path": str(tiny_model_dir),
            "datasets[0].resolution": 128,
            "training.max_train_steps": 1,
            "training.train_batch_size": 1,
            "validation.validation_steps": 0,
        },
    )
    result = run_trainer(ws, "k2")
    assert result.returncode == 0, result.stdout
    from safetensors.torch import load_file

    cached = sorted((ws / "cache" / "vae" / "shapes").glob("*.safetensors"))
    assert len(cached) == 2
    for f in cached:
        t = load_file(f)
        assert t["latent"].shape[-2:] == (16, 16) and t["reference"].shape[-2:] == (8, 8)  # 128 px vs 64 px


def test_reference_tokens_follow_the_image_with_their_own_ids_and_no_loss(tiny_model_dir):
    import torch
    from diffusers import FluxTransformer2DModel

    from fluxtui.trainer import flow

    transformer = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    c = transformer.config.in_channels // 4
    x0 = flow.pack_latents(torch.randn(2, c, 8, 8))  # 16 image tokens
    noise = torch.randn_like(x0)
    sigma = torch.full((2,), 0.5)
    ids = flow.image_ids(8, 8)
    hidden, all_ids = flow.append_reference(flow.noisy_latents(x0, noise, sigma), ids, torch.randn(2, c, 4, 6))
    assert hidden.shape[1] == 16 + 6 == all_ids.shape[0]  # image tokens, then 2x3 reference tokens
    assert torch.equal(all_ids[:16], ids)
    assert (all_ids[16:, 0] == 1).all() and (all_ids[:16, 0] == 0).all()
    assert torch.equal(all_ids[16:, 1:], flow.image_ids(4, 6)[:, 1:])

    t5 = torch.randn(2, 8, transformer.config.joint_attention_dim)
    out = transformer(
        hidden_states=hidden,
        encoder_hidden_states=t5,
        pooled_projections=torch.randn(2, transformer.config.pooled_projection_dim),
        timestep=sigma,
        img_ids=all_ids,
        txt_ids=flow.text_ids(8),
        guidance=torch.ones(2) if transformer.config.guidance_embeds else None,
        return_dict=False,
    )[0]
    out.retain_grad()
    pred = flow.target_tokens(out, x0.shape[1])
    assert pred.shape == x0.shape
    flow.flow_loss(pred, flow.flow_target(x0, noise)).backward()
    assert out.grad[:, :16].abs().sum() > 0
    assert (out.grad[:, 16:] == 0).all()  # the reference tokens carry no loss


# -- validate --------------------------------------------------------------------------------


def test_kontext_without_references_is_refused_with_the_fix(tmp_path):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    config.set_values(ws / "project.toml", {"model.model_flavour": "kontext"})
    result = checked(ws)
    assert result.returncode == 2, result.stdout
    assert "datasets[0].conditioning_data:" in result.stdout
    assert 'dataset_type = "conditioning"' in result.stdout and "plain text-to-image" in result.stdout


def test_conditioning_data_naming_a_missing_dataset_is_refused(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", table="")
    result = checked(ws)
    assert result.returncode == 2, result.stdout
    assert "datasets[0].conditioning_data:" in result.stdout and "no dataset has that id" in result.stdout
    assert 'id = "refs", dataset_type = "conditioning"' in result.stdout


def test_images_without_a_reference_are_counted_listed_and_left_out(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", refs=6)
    result = checked(ws)
    assert result.returncode == 0, result.stdout
    assert "18 of 24 images have no reference of the same name in `refs`" in result.stdout
    assert "006-red-circle.png" in result.stdout and "(+13 more)" in result.stdout
    assert "images     6" in result.stdout  # what trains: the pairs
    project, _ = config.load(ws)
    reports, _ = datasets.scan_project(project)
    assert [r.id for r in reports] == ["shapes"]  # the references are no training set
    assert all(i.reference is not None and i.reference.parent.name == "refs" for i in reports[0].images)


def test_no_image_with_a_reference_is_an_error(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", refs=0)
    (ws / "datasets" / "refs" / "unrelated.png").write_bytes(
        (ws / "datasets" / "shapes" / "000-yellow-circle.png").read_bytes()
    )
    result = checked(ws)
    assert result.returncode == 2, result.stdout
    assert "error:" in result.stdout and "24 of 24 images have no reference" in result.stdout


def test_references_with_another_flavour_are_ignored_and_said_so(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", flavour="tiny-random")
    result = checked(ws)
    assert result.returncode == 0, result.stdout
    assert "datasets[0].conditioning_data:" in result.stdout
    assert "they are ignored and the images train text-to-image" in result.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [("controlnet", "not supported by fluxtui: fluxtui trains LoRAs"), ("mask", "mask_data_dir")],
)
def test_other_conditioning_types_are_refused_with_the_reason(tmp_path, value, message):
    ws = kontext_workspace(tmp_path / "ws", table=REFS + f'conditioning_type = "{value}"\n')
    result = checked(ws)
    assert result.returncode == 2, result.stdout
    assert "conditioning_type:" in result.stdout and message in result.stdout


def test_conditioning_data_as_simpletuners_list_of_one(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", refs=6)
    text = (ws / "project.toml").read_text().replace('conditioning_data = "refs"', 'conditioning_data = ["refs"]')
    (ws / "project.toml").write_text(text)
    assert checked(ws).returncode == 0
    text = text.replace('conditioning_data = ["refs"]', 'conditioning_data = ["refs", "more"]')
    (ws / "project.toml").write_text(text)
    result = checked(ws)
    assert result.returncode == 2 and "one conditioning dataset" in result.stdout, result.stdout


def test_references_alone_are_nothing_to_train_on(tmp_path):
    ws = kontext_workspace(tmp_path / "ws", refs=6, settings={"datasets[0].disabled": True})
    result = checked(ws)
    assert result.returncode == 2, result.stdout
    assert "datasets[1].dataset_type:" in result.stdout and "no images to train on" in result.stdout
