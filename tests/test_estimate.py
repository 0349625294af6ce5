"""`fluxtui estimate`: the layer tables against the real models, LoRA counts, the calibration
against SPEC.md's figures, suggestions that really fit, and the command itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.core import config, flux_arch, schema, workspace
from fluxtui.core.estimate import GIB, STAGES, estimate, lora_param_count, with_changes
from fluxtui.core.lora_targets import LORA_TARGET_PRESETS, lora_target_linears, lora_target_modules

# SPEC.md, Model: VRAM (seed), rank-16 LoRA on all targets, batch 1, 512 px, checkpointing on.
SEEDS_GIB = {"no_change": 30, "int8-quanto": 18, "int4-quanto": 13, "nf4-bnb": 9, "int2-quanto": 9}
LOWEST_SEEN_GIB = 9090 / 1024  # nf4 + Lion 8-bit paged, 512 px
TOLERANCE = 0.15


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def ws(tmp_path) -> Path:
    return workspace.init(tmp_path / "w").root


def load(ws: Path):
    project, problems = config.load(ws)
    assert project is not None, [str(p) for p in problems]
    return project


def seed_config(project, precision: str, resolution: int = 512, **more):
    """SPEC's seed setting: rank 16 on `all`, batch 1, checkpointing on, square crops."""
    changes = {
        "model.base_model_precision": precision,
        "lora.lora_rank": 16,
        "lora.flux_lora_target": "all",
        "training.train_batch_size": 1,
        "training.gradient_checkpointing": True,
        "training.gradient_checkpointing_interval": 1,
        "datasets[0].resolution": resolution,
        "datasets[0].resolution_type": "pixel_area",
    }
    return with_changes(project, {**changes, **more})


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command in a fresh process; never a traceback."""
    env = {**os.environ, "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


# --------------------------------------------------------------------------- LoRA counts (pure)


@pytest.mark.parametrize(
    ("preset", "params", "layers"),
    [("all", 26_148_864, 266), ("all+ffs", 65_372_160, 418)],
)
def test_lora_counts_match_spec(preset, params, layers):
    assert lora_param_count(preset, 16) == (params, layers)


def test_double_block_attention_share_of_all():
    double = [lin for lin in lora_target_linears("all") if lin.name.startswith("transformer_blocks.")]
    assert len(double) == 152
    assert sum(16 * (lin.in_features + lin.out_features) for lin in double) == 14_942_208


def test_all_ffs_takes_single_blocks_proj_out_but_not_the_models():
    names = [lin.name for lin in lora_target_linears("all+ffs")]
    assert "single_transformer_blocks.0.proj_out" in names
    assert "proj_out" not in names and "x_embedder" not in names and "norm_out.linear" not in names
    assert "single_transformer_blocks.5.attn.to_q" in names  # suffixes match in single blocks too


def test_tiny_and_nano_presets():
    assert [lin.name for lin in lora_target_linears("nano")] == ["single_transformer_blocks.7.proj_out"]
    assert len(lora_target_linears("tiny")) == 2
    assert lora_target_linears("tiny", flux_arch.FLUX_TINY) == []  # the toy model has 2 single blocks


def test_presets_are_the_schema_choices():
    assert tuple(LORA_TARGET_PRESETS) == schema.LORA_TARGETS


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(KeyError, match="choose from"):
        lora_target_modules(["transformer_blocks.0.attn.to_q"], "everything")


def test_lora_param_count_scales_with_rank_and_lokr_is_smaller():
    assert lora_param_count("all", 32)[0] == 2 * lora_param_count("all", 16)[0]
    lokr, layers = lora_param_count("all", 16, lora_type="lycoris", lokr_factor=16)
    assert layers == 266 and 0 < lokr < lora_param_count("all", 16)[0] / 4


# --------------------------------------------------------------------------- against the real models

torch_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="needs torch (tests only)"
)


@torch_needed
@pytest.mark.parametrize(("guidance", "total"), [(True, 11_901_408_320), (False, 11_891_178_560)])
def test_layer_table_matches_diffusers_on_meta(guidance, total):
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=guidance)
    cfg = flux_arch.FLUX_FULL if guidance else flux_arch.FLUX_FULL_NO_GUIDANCE
    real = [
        (name, mod.in_features, mod.out_features, mod.bias is not None)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    ]
    ours = [(lin.name, lin.in_features, lin.out_features, lin.bias) for lin in flux_arch.transformer_linears(cfg)]
    assert ours == real
    assert sum(p.numel() for p in model.parameters()) == total == flux_arch.transformer_param_count(cfg)
    linear_ids = {id(p) for mod in model.modules() if isinstance(mod, torch.nn.Linear) for p in mod.parameters()}
    others = {name.rsplit(".", 1)[0]: p.numel() for name, p in model.named_parameters() if id(p) not in linear_ids}
    assert others == flux_arch.transformer_other_params(cfg)


@torch_needed
def test_presets_on_the_real_model_through_peft():
    """The trainer's path: real module names -> lora_target_modules -> peft; counted on meta."""
    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig, inject_adapter_in_model

    for preset, params, layers in (("all", 26_148_864, 266), ("all+ffs", 65_372_160, 418)):
        with torch.device("meta"):
            model = FluxTransformer2DModel(guidance_embeds=True)
            names = [n for n, _ in model.named_modules()]
            targets = lora_target_modules(names, preset)
            inject_adapter_in_model(LoraConfig(r=16, lora_alpha=16, target_modules=targets), model)
        lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        adapted = sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
        assert (lora, adapted) == (params, layers), preset


@torch_needed
def test_encoder_and_vae_sizes_match_the_trainers_architectures():
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from fluxtui.trainer import architectures as arch

    def split(model) -> tuple[int, int]:
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        return linear, sum(p.numel() for p in model.parameters()) - linear

    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**arch.T5))
        clip = CLIPTextModel(CLIPTextConfig(**arch.CLIP))
        vae = AutoencoderKL(**arch.VAE)
    assert split(t5) == (flux_arch.T5_XXL.linear_params, flux_arch.T5_XXL.other_params)
    assert split(clip) == (flux_arch.CLIP_L.linear_params, flux_arch.CLIP_L.other_params)
    assert sum(p.numel() for p in vae.parameters()) == flux_arch.VAE_FULL.params
    assert round(flux_arch.T5_XXL.params / 1e9, 2) == 4.76
    assert round(flux_arch.CLIP_L.params / 1e6) == 123
    assert round(flux_arch.VAE_FULL.params / 1e6) == 84


@torch_needed
def test_tiny_copy_agrees_with_the_trainers_tiny_builder(tmp_path):
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    from fluxtui.trainer import tiny

    tcfg = tiny.transformer_config("tiny")
    ours = flux_arch.FLUX_TINY
    assert (ours.num_layers, ours.num_single_layers) == (tcfg["num_layers"], tcfg["num_single_layers"])
    assert (ours.num_attention_heads, ours.attention_head_dim) == (
        tcfg["num_attention_heads"],
        tcfg["attention_head_dim"],
    )
    assert (ours.joint_attention_dim, ours.pooled_projection_dim, ours.in_channels, ours.guidance_embeds) == (
        tcfg["joint_attention_dim"],
        tcfg["pooled_projection_dim"],
        tcfg["in_channels"],
        tcfg["guidance_embeds"],
    )
    with torch.device("meta"):
        model = FluxTransformer2DModel(**tcfg)
    assert sum(p.numel() for p in model.parameters()) == flux_arch.transformer_param_count(ours)

    folder = tiny.build_tiny_flux(tmp_path / "tiny")

    def split(model) -> tuple[int, int]:
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        return linear, sum(p.numel() for p in model.parameters()) - linear

    assert split(T5EncoderModel.from_pretrained(folder / "text_encoder_2")) == (
        flux_arch.TINY_T5.linear_params,
        flux_arch.TINY_T5.other_params,
    )
    assert split(CLIPTextModel.from_pretrained(folder / "text_encoder")) == (
        flux_arch.TINY_CLIP.linear_params,
        flux_arch.TINY_CLIP.other_params,
    )
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    assert sum(p.numel() for p in vae.parameters()) == flux_arch.TINY_VAE.params


@torch_needed
def test_copied_trainer_constants_agree():
    from fluxtui.trainer import models, quantise

    assert set(quantise.TRANSFORMER_EXCLUDE) == set(flux_arch.QUANTISE_EXCLUDE)
    assert models.T5_MAX_LENGTH == flux_arch.T5_MAX_LENGTH


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("precision", list(SEEDS_GIB))
def test_training_stage_within_15_percent_of_spec(ws, precision):
    est = estimate(seed_config(load(ws), precision))
    train = est.stage_peaks["train"]
    assert abs(train - SEEDS_GIB[precision]) <= TOLERANCE * SEEDS_GIB[precision], (precision, train)


def test_lowest_seen_config(ws):
    est = estimate(seed_config(load(ws), "nf4-bnb", **{"training.optimizer": "bnb-lion8bit-paged"}))
    assert abs(est.stage_peaks["train"] - LOWEST_SEEN_GIB) <= TOLERANCE * LOWEST_SEEN_GIB
    assert est.stage_peaks["train"] < estimate(seed_config(load(ws), "nf4-bnb")).stage_peaks["train"]


LEAN_STARTUP = {
    "model.quantize_via": "cpu",
    "memory.offload_during_startup": True,
    "model.text_encoder_2_precision": "nf4-bnb",
    "text_embeds.write_batch_size": 4,
    "training.vae_batch_size": 1,
    "training.optimizer": "bnb-lion8bit-paged",
}


def test_1024px_nf4_needs_a_12g_card(ws):
    """SPEC: 1024 px needs >= 12G with nf4 (the lowest-VRAM settings otherwise)."""
    project = seed_config(load(ws), "nf4-bnb", 1024, **LEAN_STARTUP)
    est = estimate(project)
    assert est.fits(12) and not est.fits(10.5)
    low = estimate(
        seed_config(load(ws), "nf4-bnb", 512, **LEAN_STARTUP, **{"validation.validation_resolution": ["512x512"]})
    )
    assert low.fits(10) and low.total_gib < est.total_gib - 1.5


def test_stage_model_follows_the_trainers_startup(ws):
    project = seed_config(load(ws), "int8-quanto")
    est = estimate(project)
    assert list(est.stage_peaks) == list(STAGES)
    assert list(STAGES)[:3] == ["cache_text", "cache_latents", "load_models"]
    # each caching stage has only its own models on the GPU
    assert "transformer weights" not in est.stages["cache_text"]
    assert "text encoders" not in est.stages["cache_latents"]
    assert "transformer weights" not in est.stages["cache_latents"]
    assert set(est.stages["load_models"]) <= {"transformer weights", "one block in full precision", "CUDA context"}
    # quantising on the accelerator goes block by block: at most one full-precision block extra
    cpu = estimate(with_changes(project, {"model.quantize_via": "cpu"}))
    assert 0 < est.stage_peaks["load_models"] - cpu.stage_peaks["load_models"] < 1
    assert est.stage_peaks["load_models"] < est.stage_peaks["train"]
    # random weights are built on the CPU and placed like loaded ones
    born = estimate(with_changes(project, {"model.random_weights": True}))
    assert born.stage_peaks["load_models"] == pytest.approx(est.stage_peaks["load_models"])
    # T5 encodes a few captions at a time whatever the write batch, so that stays small
    fewer = estimate(with_changes(project, {"text_embeds.write_batch_size": 1}))
    assert fewer.stage_peaks["cache_text"] <= est.stage_peaks["cache_text"]
    assert est.stage_peaks["cache_text"] - est.stages["cache_text"]["text encoders"] < 1
    # quantising on the CPU costs RAM, not VRAM: the transformer's quantised copy grows there
    assert cpu.ram_peaks["load_models"] > est.ram_peaks["load_models"] + 5


def test_each_knob_moves_the_estimate_the_right_way(ws):
    base_project = seed_config(load(ws), "int8-quanto")
    base = estimate(base_project)

    def part(changes: dict, name: str = "activations") -> float:
        return estimate(with_changes(base_project, changes)).breakdown[name]

    act = base.breakdown["activations"]
    assert part({"datasets[0].resolution": 1024}) > 2.5 * act
    assert part({"training.train_batch_size": 2}) == pytest.approx(2 * act)
    assert part({"training.gradient_checkpointing": False}) > 8 * act
    interval2 = part({"training.gradient_checkpointing_interval": 2})
    assert act < interval2 < part({"training.gradient_checkpointing": False})
    tread = {"routes": [{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}]}
    assert part({"training.tread_config": tread}) < 0.85 * act  # 512 of 1536 tokens skip 53 blocks
    assert part({"lora.flux_lora_target": "all+ffs"}, "LoRA weights") == pytest.approx(
        base.breakdown["LoRA weights"] * 65_372_160 / 26_148_864
    )
    assert part({"training.optimizer": "bnb-adamw8bit"}, "optimizer state") < base.breakdown["optimizer state"] / 3
    assert part({"training.optimizer": "prodigy"}, "optimizer state") > base.breakdown["optimizer state"]
    offloaded = part({"memory.enable_group_offload": True}, "transformer weights")
    assert offloaded < base.breakdown["transformer weights"] / 10
    fp32 = estimate(
        with_changes(
            base_project, {"model.base_model_precision": "no_change", "model.base_model_default_dtype": "fp32"}
        )
    )
    assert fp32.breakdown["transformer weights"] == pytest.approx(2 * 11_901_408_320 * 2 / GIB, rel=1e-3)


def test_schnell_has_fewer_params_and_shorter_text(ws):
    est = estimate(with_changes(load(ws), {"model.model_flavour": "schnell"}))
    assert est.transformer_params == 11_891_178_560
    assert est.text_tokens == 256
    assert estimate(with_changes(load(ws), {"model.tokenizer_max_length": 128})).text_tokens == 128


def test_tiny_random_gives_a_tiny_estimate(tmp_path):
    demo = workspace.init(tmp_path / "demo", demo=True).root
    est = estimate(load(demo))
    assert est.transformer_params == flux_arch.transformer_param_count(flux_arch.FLUX_TINY)
    assert est.total_gib < 0.6  # the CUDA context and almost nothing else
    assert sum(v for k, v in est.breakdown.items() if k != "CUDA context") < 0.01
    assert est.seconds_per_step is None


def test_speed_is_rough_but_follows_the_seed(ws):
    assert estimate(seed_config(load(ws), "nf4-bnb", 512)).seconds_per_step == pytest.approx(1.4)
    assert estimate(seed_config(load(ws), "nf4-bnb", 1024)).seconds_per_step == pytest.approx(3.5)


def test_with_changes_leaves_the_project_alone(ws):
    project = load(ws)
    changed = with_changes(project, {"model.base_model_precision": "nf4-bnb", "datasets[0].resolution": 512.0})
    assert project.model.base_model_precision == "int8-quanto" and project.datasets[0].resolution == 1024
    assert changed.model.base_model_precision == "nf4-bnb" and changed.datasets[0].resolution == 512


# --------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize("gpu", [18, 16, 12, 10, 8])
def test_suggestions_fit_when_written_to_the_file(ws, gpu):
    est = estimate(load(ws))
    assert not est.fits(gpu)
    suggestions = est.suggestions(gpu)
    assert suggestions
    for s in suggestions:
        assert s.fits and s.total_gib <= gpu
        text = (ws / "project.toml").read_text()
        config.set_values(ws, s.changes)  # real, checked option values
        again = estimate(load(ws))
        assert again.total_gib == pytest.approx(s.total_gib) and again.fits(gpu)
        (ws / "project.toml").write_text(text)


def test_no_suggestions_when_it_fits(ws):
    est = estimate(load(ws))
    assert est.fits(80) and est.suggestions(80) == []


def test_hopeless_gpu_says_so(ws):
    (s,) = estimate(load(ws)).suggestions(2)
    assert s.combined and not s.fits and s.total_gib > 2


# --------------------------------------------------------------------------- the command


def test_cli_table(ws):
    result = run_cli("estimate", str(ws))
    assert result.returncode == 0
    out = result.stdout
    assert "training step" in out and "transformer weights" in out and "activations" in out
    assert "load models" in out and "cache text" in out and "<- peak" in out
    assert "needs " in out and "GiB of GPU memory" in out
    assert "s/step" in out and "rough" in out
    assert "\033[" not in out


def test_cli_gpu_fit_and_suggestions(ws, tmp_path):
    assert "fits a 24 GB GPU" in run_cli("estimate", str(ws), "--gpu-gb", "24").stdout
    result = run_cli("estimate", str(ws), "--gpu-gb", "18")
    assert result.returncode == 0
    assert "does not fit a 18 GB GPU" in result.stdout
    assert re.search(r"model\.base_model_precision = \"int4-quanto\" +-> \d+\.\d GiB", result.stdout)
    combo = run_cli("estimate", str(ws), "--gpu-gb", "10").stdout
    assert "together these fit" in combo and 'model.base_model_precision = "nf4-bnb"' in combo
    demo = workspace.init(tmp_path / "demo", demo=True).root
    assert "fits a 8 GB GPU" in run_cli("estimate", str(demo), "--gpu-gb", "8").stdout


def test_cli_json(ws):
    result = run_cli("estimate", str(ws), "--json", "--gpu-gb", "16")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["total_gib"] == pytest.approx(max(data["stage_peaks"].values()), abs=0.02)
    assert data["stage_peaks"]["train"] == pytest.approx(sum(data["breakdown"].values()), abs=0.02)
    assert data["lora_params"] == 26_148_864 and data["lora_layers"] == 266
    assert data["fits"] is False and data["suggestions"][0]["total_gib"] <= 16
    plain = json.loads(run_cli("estimate", str(ws), "--json").stdout)
    assert "fits" not in plain and plain["total_gib"] == data["total_gib"]


def test_cli_config_errors_exit_2(ws, tmp_path):
    path = ws / "project.toml"
    path.write_text(path.read_text().replace('base_model_precision = "int8-quanto"', 'base_model_precision = "int9"'))
    result = run_cli("estimate", str(ws))
    assert result.returncode == 2
    assert "base_model_precision" in result.stdout and "error" in result.stdout
    missing = run_cli("estimate", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "fluxtui init" in missing.stdout
    bad_gpu = run_cli("estimate", str(tmp_path / "nowhere"), "--gpu-gb", "x")
    assert bad_gpu.returncode == 2


def test_cli_rejects_a_nonpositive_gpu(ws):
    result = run_cli("estimate", str(ws), "--gpu-gb", "0")
    assert result.returncode == 2 and "--gpu-gb" in result.stderr


def test_estimate_command_loads_no_ml_stack(ws):
    code = (
        "import sys, contextlib, io\n"
        "from fluxtui.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): main(['estimate', {str(ws)!r}, '--gpu-gb', '12'])\n"
        "print(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert not loaded & {"torch", "diffusers", "transformers", "peft", "textual", "optimum", "bitsandbytes"}


def test_torch_visible_part_leaves_out_the_cuda_context(ws):
    est = estimate(load(ws))
    assert est.torch_gib("train") == pytest.approx(est.stage_peaks["train"] - est.breakdown["CUDA context"])


def test_pixel_resolution_without_crop_assumes_aspect_buckets(ws):
    # crop = false keeps each image's aspect whatever crop_aspect says: buckets up to 3:2
    base = {"datasets[0].resolution_type": "pixel", "datasets[0].resolution": 512}
    loose = estimate(with_changes(load(ws), {**base, "datasets[0].crop": False}))
    square = estimate(with_changes(load(ws), {**base, "datasets[0].crop": True, "datasets[0].crop_aspect": "square"}))
    assert any("aspect buckets" in n for n in loose.notes)
    assert not any("aspect buckets" in n for n in square.notes)
