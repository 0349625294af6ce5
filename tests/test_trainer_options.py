"""Every option of SPEC.md through a real trainer run on tiny-random, several per run.

EXERCISED maps each option to the test that sets it (to a non-default value where that
makes a difference); SKIPPED says why the rest cannot run here. A test checks that the two
together cover the whole schema, so a new option cannot slip through untested.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from trainer_support import (
    check_well_formed,
    end_event,
    events,
    make_assistant_lora,
    make_workspace,
    run_trainer,
    steps,
)

from fluxtui.core.schema import OPTIONS

pytestmark = pytest.mark.slow

FAKE_TOKEN = "hf_ThisIsNotARealToken0123456789"

EXERCISED = {
    # test_trainer_runs.py / test_trainer_multiprocess.py (see there)
    **dict.fromkeys(
        [
            "project.name",
            "model.model_flavour",
            "model.base_model_precision",
            "model.text_encoder_1_precision",
            "model.base_model_default_dtype",
            "model.tokenizer_max_length",
            "training.train_batch_size",
            "training.gradient_accumulation_steps",
            "training.max_train_steps",
            "training.learning_rate",
            "training.lr_scheduler",
            "training.lr_warmup_steps",
            "training.max_grad_norm",
            "training.seed",
            "training.gradient_checkpointing",
            "training.optimizer",
            "training.flow_schedule_auto_shift",
            "training.checkpointing_steps",
            "training.checkpoints_total_limit",
            "training.resume_from_checkpoint",
            "lora.lora_dropout",
            "lora.lora_init_type",
            "lora.flux_lora_target",
            "validation.validation_prompt",
            "validation.validation_steps",
            "validation.validation_resolution",
            "validation.validation_num_inference_steps",
            "hardware.num_processes",
            "hardware.main_process_port",
            "datasets.id",
            "datasets.type",
            "datasets.instance_data_dir",
            "datasets.resolution",
            "datasets.resolution_type",
            "datasets.caption_strategy",
        ],
        "test_trainer_runs",
    ),
    # options_a
    **dict.fromkeys(
        [
            "training.num_train_epochs",
            "training.flux_fast_schedule",
            "training.flux_guidance_value",
            "training.tread_config",
            "training.flux_attention_masked_training",
            "training.gradient_checkpointing_interval",
            "training.mixed_precision",
            "lora.lora_format",
            "lora.lora_rank",
            "lora.lora_alpha",
            "hub.push_to_hub",
            "hub.hub_model_id",
            "hub.hub_private",
            "logging.report_to",
            "logging.tracker_project_name",
            "memory.offload_during_startup",
            "memory.vae_enable_tiling",
            "validation.validation_guidance",
            "validation.validation_guidance_real",
            "validation.validation_negative_prompt",
            "validation.validation_seed",
            "validation.prompts",
            "text_embeds.cache_dir",
            "datasets.mask_data_dir",
            "datasets.crop",
            "datasets.crop_style",
            "datasets.crop_aspect",
            "datasets.cache_dir_vae",
            "datasets.minimum_image_size",
            "datasets.maximum_image_size",
            "datasets.target_downsample_size",
            "datasets.repeats",
            "datasets.probability",
            "datasets.is_regularisation_data",
            "datasets.instance_prompt",
        ],
        "test_options_a",
    ),
    # options_b
    **dict.fromkeys(
        [
            "model.pretrained_model_name_or_path",
            "model.pretrained_vae_model_name_or_path",
            "model.pretrained_transformer_model_name_or_path",
            "model.pretrained_transformer_subfolder",
            "model.text_encoder_2_precision",
            "model.quantize_via",
            "lora.init_lora",
            "training.adam_beta1",
            "training.adam_beta2",
            "training.adam_weight_decay",
            "training.adam_epsilon",
            "training.flow_schedule_shift",
            "training.vae_batch_size",
            "memory.enable_group_offload",
            "memory.group_offload_type",
            "memory.group_offload_blocks_per_group",
            "memory.group_offload_use_stream",
            "memory.group_offload_to_disk_path",
            "memory.enable_model_cpu_offload",
            "text_embeds.write_batch_size",
            "datasets.disabled",
        ],
        "test_options_b",
    ),
    # options_c
    **dict.fromkeys(["lora.lora_type", "lora.lokr_factor"], "test_options_c"),
    # SimpleTuner parity
    **dict.fromkeys(
        [
            "datasets.crop_aspect_buckets",
            "training.grad_clip_method",
            "training.flux_guidance_mode",
            "training.flux_guidance_min",
            "training.flux_guidance_max",
            "training.caption_dropout_probability",
            "validation.validation_guidance_rescale",
            "validation.user_prompt_library",
            "hub.push_checkpoints_to_hub",
        ],
        "test_options_simpletuner_parity",
    ),
    # test_kontext.py
    **dict.fromkeys(
        ["datasets.dataset_type", "datasets.conditioning_data", "datasets.conditioning_type"],
        "test_kontext",
    ),
    # test_hf_datasets.py: a DatasetDict with its own split, image, caption and size columns
    **dict.fromkeys(
        [
            "datasets.dataset_name",
            "datasets.split",
            "datasets.image_column",
            "datasets.caption_column",
            "datasets.width_column",
            "datasets.height_column",
        ],
        "test_tiny_random_trains_on_a_saved_dataset",
    ),
    # test_lycoris_config.py (a real run with a module_algo_map factor)
    "lora.lycoris_config": "test_lycoris_config",
    # test_assistant_lora.py (a real run, and the adapter stack in the tiny transformer)
    **dict.fromkeys(
        [
            "lora.assistant_lora_path",
            "lora.assistant_lora_weight_name",
            "lora.assistant_lora_strength",
            "lora.assistant_lora_inference_strength",
            "lora.disable_assistant_lora",
        ],
        "test_assistant_lora",
    ),
    # test_ema.py
    **dict.fromkeys(
        [
            "training.use_ema",
            "training.ema_decay",
            "training.ema_update_interval",
            "training.ema_device",
            "validation.ema_validation",
        ],
        "test_ema",
    ),
}

SKIPPED = {
    "model.random_weights": "the full-size architecture needs ~24 GB and minutes per step on a CPU; "
    "`fluxtui probe` measures it on a GPU",
    "training.attention_mechanism": "sageattention needs its package and a CUDA GPU",
    "training.torch_compile": "compiling the blocks takes minutes on a CPU and pays off only on a GPU",
    "hardware.gpu_ids": "selects CUDA devices; launcher wiring is tested in test_launch.py",
    "hardware.num_machines": "several machines; launcher wiring is tested in test_launch.py",
    "hardware.machine_rank": "several machines; launcher wiring is tested in test_launch.py",
    "hardware.main_process_ip": "several machines; launcher wiring is tested in test_launch.py",
    "datasets.revision": "picks a branch, tag or commit of a hub dataset and the hub is unreachable here; "
    "a local folder ignores it and validate warns (test_hf_datasets.py)",
    "hardware.accelerate_config": "DeepSpeed/FSDP configs need GPUs; launcher wiring is tested in test_launch.py",
}


def _all_options() -> set[str]:
    return {o.dotted for o in OPTIONS}


def test_every_option_is_exercised_or_skipped_with_a_reason():
    covered = set(EXERCISED) | set(SKIPPED)
    assert not set(EXERCISED) & set(SKIPPED)
    assert _all_options() - covered == set(), "options no trainer test sets"
    assert covered - _all_options() == set(), "options that no longer exist"


@pytest.mark.parametrize("option", sorted(SKIPPED))
def test_options_that_need_what_this_machine_lacks(option):
    pytest.skip(f"{option}: {SKIPPED[option]}")


@pytest.fixture
def tiny_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny-models"


def _corrupt_copy(src: Path, dest: Path) -> None:
    """A PNG whose chunks (with valid CRCs) and end marker are intact, so the header scan
    accepts it, but whose compressed pixel data is garbage: only decoding finds out."""
    import struct
    import zlib

    raw = bytearray(src.read_bytes())
    pos = 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind = bytes(raw[pos + 4 : pos + 8])
        if kind == b"IDAT":
            body = bytes(random.Random(0).randrange(256) for _ in range(length))
            raw[pos + 8 : pos + 8 + length] = body
            raw[pos + 8 + length : pos + 12 + length] = struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + length
    dest.write_bytes(bytes(raw))


def test_options_a(tmp_path, tiny_root):
    from PIL import Image, ImageDraw

    ws = make_workspace(
        tmp_path / "a",
        {
            "project.name": "options-a",
            "training.max_train_steps": 0,
            "training.num_train_epochs": 2,
            "training.mixed_precision": "bf16",  # a CPU trains in fp32 whatever this says
            "model.base_model_precision": "nf4-bnb",
            "training.flux_fast_schedule": True,
            "training.flux_guidance_value": 3.5,
            "training.tread_config": {"routes": [{"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": -2}]},
            "training.flux_attention_masked_training": True,
            "training.gradient_checkpointing_interval": 2,
            "training.lr_scheduler": "cosine",
            "training.lr_warmup_steps": 2,
            "training.optimizer": "optimi-lion",
            "training.learning_rate": 1e-4,
            "training.checkpointing_steps": 0,
            "lora.lora_format": "comfyui",
            "lora.lora_rank": 4,
            "lora.lora_alpha": 8.0,
            "lora.lora_init_type": "gaussian",
            "hub.push_to_hub": True,
            "hub.hub_model_id": "someone/fluxtui-test",
            "hub.hub_private": False,
            "logging.report_to": "tensorboard",
            "logging.tracker_project_name": "opts",
            "memory.offload_during_startup": True,
            "memory.vae_enable_tiling": True,
            "validation.validation_steps": 16,
            "validation.validation_guidance": 2.5,
            "validation.validation_guidance_real": 2.0,
            "validation.validation_negative_prompt": "blurry",
            "validation.validation_seed": 3,
            "validation.validation_num_inference_steps": 2,
            "validation.prompts": {"circle": "a green circle", "square": "a red square"},
            "validation.validation_resolution": ["64x64", "128x64"],
            "text_embeds.cache_dir": "cache/text-custom",
            "datasets[0].mask_data_dir": "datasets/masks",
            "datasets[0].crop": True,
            "datasets[0].crop_style": "random",
            "datasets[0].cache_dir_vae": "cache/vae-custom",
            "datasets[0].minimum_image_size": 32,
        },
        tiny_root=tiny_root,
    )
    data = ws / "datasets"
    (data / "masks").mkdir()
    shapes = sorted((data / "shapes").glob("*.png"))
    for p in shapes[:6]:
        m = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(m).rectangle((0, 0, 40, 64), fill=255)
        m.save(data / "masks" / p.name)
    _corrupt_copy(shapes[0], data / "shapes" / "zzz-corrupt.png")
    (data / "shapes" / "zzz-corrupt.txt").write_text("a broken picture")
    Image.new("RGB", (16, 16), (1, 2, 3)).save(data / "shapes" / "tiny.png")  # below minimum_image_size
    wide = data / "wide"
    wide.mkdir()
    rng = random.Random(1)
    for i in range(6):
        size = (128, 64) if i % 2 else (64, 128)
        Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(wide / f"a_wide_thing_{i}.png")
    (ws / "project.toml").write_text(
        (ws / "project.toml").read_text()
        + """
[[datasets]]
id = "wide"
instance_data_dir = "datasets/wide"
resolution = 0.016384
resolution_type = "area"
crop = true
crop_aspect = "preserve"
crop_style = "corner"
caption_strategy = "filename"
repeats = 1
probability = 0.5
is_regularisation_data = true
maximum_image_size = 0.006
target_downsample_size = 0.005

[[datasets]]
id = "inst"
instance_data_dir = "datasets/shapes"
resolution = 64
resolution_type = "pixel_area"
caption_strategy = "instanceprompt"
instance_prompt = "sks shape"
crop_aspect = "closest"
"""
    )
    proc = run_trainer(ws, "a", env={"HF_HUB_OFFLINE": "0", "HF_TOKEN": FAKE_TOKEN})
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs = events(ws, "a")
    check_well_formed(evs, "a")
    assert end_event(evs)["status"] == "completed"
    run_dir = ws / "outputs" / "a"

    # an epoch: shapes 24 usable -> 6 batches of 4; wide: two buckets of 3 images x2 repeats ->
    # 2+2; inst (same folder, no minimum size: tiny.png counts) 25 -> 7. Two epochs: 34 steps
    assert sorted(steps(evs)) == list(range(1, 2 * 17 + 1))
    assert max(e["epoch"] for e in evs if e["type"] == "step") == 2

    warnings = [e for e in evs if e["type"] == "warning"]
    corrupt = [w for w in warnings if "zzz-corrupt.png" in w["message"]]
    assert corrupt and corrupt[0]["key"] == "datasets[0].instance_data_dir"
    assert "cannot decode datasets/shapes/zzz-corrupt.png" in corrupt[0]["message"]
    assert any("have no mask" in w["message"] for w in warnings)
    assert any(w["key"] == "hub.push_to_hub" and "could not be reached" in w["message"] for w in warnings)
    log = proc.stdout + (run_dir / "events.jsonl").read_text()
    assert FAKE_TOKEN not in log  # tokens never reach logs or events

    vals = [e for e in evs if e["type"] == "validation"]
    assert [v["step"] for v in vals] == [16, 32, 34]  # every 16 steps, and at the end
    assert sorted(vals[0]["images"]) == sorted(
        f"validation/step-16/{name}-{res}.png"
        for name in ("validation", "circle", "square")
        for res in ("64x64", "128x64")
    )
    from PIL import Image as PILImage

    with PILImage.open(run_dir / "validation/step-16/circle-128x64.png") as im:
        assert im.size == (128, 64)

    lora_dir = run_dir / "lora"
    assert (lora_dir / "pytorch_lora_weights.safetensors").exists()
    assert (lora_dir / "pytorch_lora_weights_comfyui.safetensors").exists()
    assert "options-a" in (lora_dir / "README.md").read_text()
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(list((ws / "cache" / "vae-custom").glob("*.safetensors"))) == 24  # shapes, not the broken one
    assert len(list((ws / "cache" / "vae" / "wide").glob("*.safetensors"))) == 6
    assert list((ws / "cache" / "text-custom").rglob("*.safetensors"))
    assert "CPU threads: 1" in proc.stdout


def _init_lora_file(ws: Path, dest: Path) -> None:
    """A LoRA (rank 16, context+ffs) made in this process, for init_lora."""
    from fluxtui.core import config
    from fluxtui.trainer import lora

    project, problems = config.load(ws)
    assert project is not None, problems
    from diffusers import FluxTransformer2DModel

    t = FluxTransformer2DModel.from_pretrained(ws / "cache" / "models" / "tiny-0" / "transformer")
    lora.add_lora(t, project)
    for p in t.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    lora.save_lora(t, dest)


def test_options_b(tmp_path, tiny_root):
    pytest.importorskip("optimum.quanto")
    pytest.importorskip("wandb")
    from fluxtui.core import config

    tiny = "cache/models/tiny-0"
    ws = make_workspace(
        tmp_path / "b",
        {
            "model.model_flavour": "schnell",  # from a local folder: fast schedule switches on
            "model.pretrained_model_name_or_path": tiny,
            "model.pretrained_transformer_model_name_or_path": tiny,
            "model.pretrained_transformer_subfolder": "transformer",
            "model.pretrained_vae_model_name_or_path": f"{tiny}/vae",
            "model.base_model_precision": "int8-quanto",
            "model.text_encoder_1_precision": "fp8-quanto",
            "model.text_encoder_2_precision": "int8-quanto",
            "model.quantize_via": "cpu",
            "lora.flux_lora_target": "context+ffs",
            "training.max_train_steps": 6,
            "training.optimizer": "prodigy",
            "training.learning_rate": 1.0,
            "training.lr_scheduler": "polynomial",
            "training.adam_beta1": 0.85,
            "training.adam_beta2": 0.98,
            "training.adam_weight_decay": 0.001,
            "training.adam_epsilon": 1e-7,
            "training.flow_schedule_shift": 1.5,
            "training.vae_batch_size": 3,
            "training.checkpointing_steps": 3,
            "training.resume_from_checkpoint": "none",
            "memory.enable_group_offload": True,
            "memory.group_offload_type": "leaf_level",
            "memory.group_offload_blocks_per_group": 2,
            "memory.group_offload_use_stream": True,
            "memory.group_offload_to_disk_path": "offload",
            "memory.enable_model_cpu_offload": False,
            "logging.report_to": "wandb",
            "text_embeds.write_batch_size": 2,
            "validation.validation_steps": 6,
        },
        tiny_root=tiny_root,
    )
    # datasets[0] is regularisation data; the subject dataset's weight is so small that its
    # batches come after all of datasets[0]'s: the 6 steps see regularisation batches only
    config.set_values(ws / "project.toml", {"datasets[0].is_regularisation_data": True})
    (ws / "project.toml").write_text(
        (ws / "project.toml").read_text()
        + '\n[[datasets]]\nid = "off"\ninstance_data_dir = "datasets/missing"\ndisabled = true\n'
        + '\n[[datasets]]\nid = "subject"\ninstance_data_dir = "datasets/shapes"\nresolution = 64\n'
        'resolution_type = "pixel"\nprobability = 1e-9\n'
    )
    # schnell stacks an assistant LoRA; offline, the hub default cannot come: a local one, on int8
    make_assistant_lora(ws / tiny / "transformer", ws / "helper", std=0.01)
    config.set_values(ws / "project.toml", {"lora.assistant_lora_path": "helper/pytorch_lora_weights.safetensors"})
    _init_lora_file(ws, ws / "init")
    config.set_values(ws / "project.toml", {"lora.init_lora": "init/pytorch_lora_weights.safetensors"})
    # group offload and model CPU offload exclude each other: the first run is refused whole
    config.set_values(ws / "project.toml", {"memory.enable_model_cpu_offload": True})
    proc = run_trainer(ws, "refused")
    assert proc.returncode == 1
    assert "enable_model_cpu_offload" in end_event(events(ws, "refused"))["error"]
    config.set_values(ws / "project.toml", {"memory.enable_model_cpu_offload": False})

    proc = run_trainer(ws, "b1")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "assistant LoRA loaded from" in proc.stdout
    evs = events(ws, "b1")
    check_well_formed(evs, "b1")
    losses = steps(evs)
    assert sorted(losses) == list(range(1, 7))
    # the target is the base model's answer (adapter off): the loss is the adapter's effect,
    # neither the flow loss (~1.3) nor zero (which would mean the adapter never switched off)
    assert all(0 < losses[s] < 0.3 for s in losses), losses
    assert all(e["grad_norm"] > 0 for e in evs if e["type"] == "step")
    out = proc.stdout
    assert "quantising the transformer to int8-quanto on the CPU" in out
    assert any(e["type"] == "warning" and e["key"] == "memory.enable_group_offload" for e in evs)
    assert list((ws / "outputs" / "b1" / "wandb").rglob("*.wandb"))
    # resume_from_checkpoint = "none": a second run starts again at step 1
    config.set_values(
        ws / "project.toml", {"memory.enable_model_cpu_offload": True, "memory.enable_group_offload": False}
    )
    proc = run_trainer(ws, "b2", "--max-steps", "2")
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs2 = events(ws, "b2")
    assert evs2[0]["resumed_from"] is None and sorted(steps(evs2)) == [1, 2]
    assert re.search(r"starting fresh", proc.stdout)


def test_options_c(tmp_path, tiny_root):
    pytest.importorskip("lycoris")
    ws = make_workspace(
        tmp_path / "c",
        {
            "lora.lora_type": "lycoris",
            "lora.lokr_factor": 4,
            "lora.flux_lora_target": "all+ffs",
            "training.optimizer": "bnb-lion8bit-paged",
            "training.lr_scheduler": "constant_with_warmup",
            "training.lr_warmup_steps": 2,
            "training.learning_rate": 1e-4,
            "training.max_train_steps": 6,
            "training.checkpointing_steps": 3,
            "validation.validation_steps": 3,
        },
        tiny_root=tiny_root,
    )
    proc = run_trainer(ws, "c1")
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs = events(ws, "c1")
    check_well_formed(evs, "c1")
    assert sorted(steps(evs)) == list(range(1, 7))
    assert (ws / "outputs" / "c1" / "lora" / "pytorch_lora_weights.safetensors").exists()
    # resume a LoKr adapter
    proc = run_trainer(ws, "c2", "--max-steps", "8")
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs2 = events(ws, "c2")
    assert evs2[0]["resumed_from"] == 6 and sorted(steps(evs2)) == [7, 8]


def _latent_shapes(folder: Path) -> dict[tuple[int, ...], int]:
    from safetensors import safe_open

    shapes: dict[tuple[int, ...], int] = {}
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as t:
            shape = tuple(t.get_slice("latent").get_shape())
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


def test_options_simpletuner_parity(tmp_path, tiny_root):
    """Options that carry SimpleTuner's names mean what they mean there, in a real run."""
    import json

    from PIL import Image

    ws = make_workspace(
        tmp_path / "p",
        {
            "training.max_train_steps": 0,
            "training.num_train_epochs": 1,
            "training.train_batch_size": 2,
            "training.grad_clip_method": "norm",
            "training.max_grad_norm": 1.0,
            "training.flow_schedule_shift": 0,
            "training.flux_guidance_mode": "random-range",
            "training.flux_guidance_min": 1.0,
            "training.flux_guidance_max": 4.0,
            "training.caption_dropout_probability": 0.5,
            "training.checkpointing_steps": 9,
            "validation.validation_steps": 18,
            "validation.validation_guidance_real": 2.0,
            "validation.validation_guidance_rescale": 0.5,
            "validation.user_prompt_library": "prompts.json",
            "validation.validation_resolution": ["64x64"],
            "validation.validation_num_inference_steps": 2,
            "hub.push_checkpoints_to_hub": True,
            "hub.hub_model_id": "someone/parity",
        },
        tiny_root=tiny_root,
    )
    (ws / "prompts.json").write_text(json.dumps({"anime_<token>": "a green circle"}))
    data = ws / "datasets"
    for folder, sizes in (("photos", [(192, 128)] * 4), ("tall", [(64, 768), (64, 768), (64, 832), (64, 832)])):
        (data / folder).mkdir()
        for i, size in enumerate(sizes):
            Image.new("RGB", size, (40 * i, 90, 200)).save(data / folder / f"img_{i}.png")
    (ws / "project.toml").write_text(
        (ws / "project.toml").read_text()
        + """
[[datasets]]
id = "photos"
instance_data_dir = "datasets/photos"
resolution = 128
resolution_type = "pixel"
caption_strategy = "filename"

[[datasets]]
id = "tall"
instance_data_dir = "datasets/tall"
resolution = 64
resolution_type = "pixel"
caption_strategy = "filename"

[[datasets]]
id = "photos-cropped"
instance_data_dir = "datasets/photos"
resolution = 128
resolution_type = "pixel"
caption_strategy = "filename"
crop = true
crop_aspect = "closest"
crop_aspect_buckets = [0.5, 1.78]
"""
    )
    proc = run_trainer(ws, "p", env={"HF_TOKEN": FAKE_TOKEN})
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs = events(ws, "p")
    check_well_formed(evs, "p")
    # an epoch of batches of 2: shapes 24 -> 12; photos 1 bucket -> 2; tall 2 buckets -> 2;
    # photos-cropped -> 2. Every batch stacked (one size per bucket), or the run had failed
    assert sorted(steps(evs)) == list(range(1, 19))
    cache = ws / "cache" / "vae"
    # crop = false keeps the 192x128 photo's 3:2 (latent 24 wide, 16 high), not a square
    assert _latent_shapes(cache / "photos") == {(16, 16, 24): 4}
    # 64x768 and 64x832 share the rounded aspect 0.08 but are two buckets of their own size
    assert _latent_shapes(cache / "tall") == {(16, 96, 8): 2, (16, 104, 8): 2}
    # crop_aspect = "closest" crops the 1.5 photo to the nearest listed aspect, 1.78 (256x128)
    assert _latent_shapes(cache / "photos-cropped") == {(16, 16, 32): 4}
    assert all(e["grad_norm"] > 0 for e in evs if e["type"] == "step")
    warnings = [e for e in evs if e["type"] == "warning"]
    assert any(w["key"] == "hub.push_checkpoints_to_hub" and "step 9" in w["message"] for w in warnings)
    run_dir = ws / "outputs" / "p"
    assert (run_dir / "checkpoints" / "checkpoint-18").is_dir()
    assert FAKE_TOKEN not in proc.stdout + (run_dir / "events.jsonl").read_text()
    (val,) = [e for e in evs if e["type"] == "validation"]  # at the end, with the library's prompt
    assert sorted(val["images"]) == [
        "validation/step-18/anime__token_-64x64.png",
        "validation/step-18/validation-64x64.png",
    ]
