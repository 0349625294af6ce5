"""LoRA on the tiny-random Flux transformer: presets, init types, LoKr, file formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, make_project

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from fluxtui.trainer.lora import add_lora, lora_state_dict, save_lora, set_adapter_enabled  # noqa: E402
from fluxtui.trainer.models import encode_prompts, load_models  # noqa: E402

CPU = torch.device("cpu")


def forward(models, embeds, pooled, latents, t=0.5):
    b = latents.shape[0]
    return models.transformer(
        hidden_states=latents,
        encoder_hidden_states=embeds,
        pooled_projections=pooled,
        timestep=torch.full((b,), t),
        img_ids=torch.zeros(latents.shape[1], 3),
        txt_ids=torch.zeros(embeds.shape[1], 3),
        guidance=torch.ones(b),
        return_dict=False,
    )[0]


@pytest.fixture
def tiny(tmp_path):
    project = make_project(tmp_path / "ws")
    models = load_models(project, device=CPU, log=lambda s: None)
    embeds, pooled, _ = encode_prompts(models, ["a cat", "a dog"], device=CPU)
    return project, models, embeds, pooled


def test_standard_lora_trains_and_switches_off(tiny):
    project, models, embeds, pooled = tiny
    params = add_lora(models.transformer, project)
    assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params)
    trainable = [p for p in models.transformer.parameters() if p.requires_grad]
    assert len(trainable) == len(params)
    latents = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(0))
    before = forward(models, embeds, pooled, latents).detach()
    opt = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(2):
        loss = forward(models, embeds, pooled, latents).pow(2).mean()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        opt.step()
        opt.zero_grad()
    after = forward(models, embeds, pooled, latents).detach()
    assert not torch.allclose(before, after)
    set_adapter_enabled(models.transformer, False)
    assert torch.allclose(forward(models, embeds, pooled, latents).detach(), before, atol=1e-6)
    set_adapter_enabled(models.transformer, True)
    assert torch.allclose(forward(models, embeds, pooled, latents).detach(), after, atol=1e-6)

    sd = lora_state_dict(models.transformer)
    assert sd and all(k.startswith("transformer.") for k in sd)


def test_saved_lora_loads_in_a_fresh_pipeline(tiny, tmp_path):
    from diffusers import FluxPipeline

    project, models, _, _ = tiny
    params = add_lora(models.transformer, project)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.05)
    paths = save_lora(models.transformer, tmp_path / "lora")
    assert [p.name for p in paths] == ["pytorch_lora_weights.safetensors"]

    pipe = FluxPipeline.from_pretrained(Path(models.source))

    def image():
        return pipe(
            "a cat",
            height=64,
            width=64,
            num_inference_steps=2,
            max_sequence_length=32,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images

    base = image()
    pipe.load_lora_weights(paths[0], adapter_name="mine")
    changed = image()
    assert abs(changed - base).max() > 1e-3
    pipe.set_adapters(["mine"], adapter_weights=[0.0])
    assert abs(image() - base).max() < 1e-5


# --------------------------------------------------------------------------- presets

from fluxtui.core.schema import LORA_TARGETS  # noqa: E402
from fluxtui.trainer.lora import LoraError, load_lora_state  # noqa: E402

# Tiny model: 1 double block, 2 single blocks. Counted by hand from SPEC.md's preset table.
TINY_LAYERS = {
    "mmdit": 4 + 2 * 3,
    "context": 4,
    "context+ffs": 6,
    "all": 14,
    "all+ffs": 14 + 4 + 2 * 2,
    "tiny": 0,
    "nano": 0,
}


def lora_project(tmp_path: Path, **lora) -> object:
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in lora.items())
    return make_project(tmp_path / "ws", TINY + "[lora]\n" + lines)


def adapted_layers(transformer) -> set[str]:
    return {n.rsplit(".lora_A", 1)[0] for n, _ in transformer.named_parameters() if ".lora_A." in n}


def fresh_transformer(folder: Path):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")


@pytest.mark.parametrize("preset", LORA_TARGETS)
def test_every_preset_on_the_tiny_model(preset, tmp_path, tiny_model_dir):
    transformer = fresh_transformer(tiny_model_dir)
    project = lora_project(tmp_path, flux_lora_target=preset, lora_rank=4)
    if TINY_LAYERS[preset] == 0:
        with pytest.raises(LoraError) as err:
            add_lora(transformer, project)
        assert err.value.key == "lora.flux_lora_target"
        return
    add_lora(transformer, project)
    layers = adapted_layers(transformer)
    assert len(layers) == TINY_LAYERS[preset]
    assert "proj_out" not in layers  # never the model's own output projection
    if preset == "all+ffs":
        assert "single_transformer_blocks.1.proj_out" in layers


def test_full_size_counts_on_meta(tmp_path):
    """SPEC.md's rank-16 figures, with peft itself on the meta device."""
    from diffusers import FluxTransformer2DModel

    from fluxtui.trainer import architectures
    from fluxtui.trainer.lora import target_modules

    expected = {"all": (266, 26_148_864), "all+ffs": (418, 65_372_160)}
    for preset, (layers, params) in expected.items():
        with torch.device("meta"):
            transformer = FluxTransformer2DModel(**architectures.architecture("dev")["transformer"])
        trainable = add_lora(transformer, lora_project(tmp_path / preset, flux_lora_target=preset))
        assert len(adapted_layers(transformer)) == layers
        assert sum(p.numel() for p in trainable) == params
    names = [n for n, _ in transformer.named_modules()]
    assert target_modules(names, "tiny") == [
        "single_transformer_blocks.7.proj_out",
        "single_transformer_blocks.20.proj_out",
    ]
    assert target_modules(names, "nano") == ["single_transformer_blocks.7.proj_out"]


# --------------------------------------------------------------------------- init types


def _perturb(params, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _out(transformer, seed=1):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 16, 64, generator=gen)
    embeds = torch.randn(1, 8, 32, generator=gen)
    pooled = torch.randn(1, 32, generator=gen)
    with torch.no_grad():
        return transformer(
            hidden_states=latents,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(16, 3),
            txt_ids=torch.zeros(8, 3),
            guidance=torch.tensor([1.0]),
            return_dict=False,
        )[0]


@pytest.mark.parametrize(
    "init",
    [
        "default",
        "gaussian",
        pytest.param(
            "loftq", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="peft's LoftQ needs CUDA")
        ),
        "olora",
        "pissa",
    ],
)
def test_init_types_construct_and_save_against_the_original_base(init, tmp_path, tiny_model_dir):
    """PiSSA/OLoRA/LoftQ rewrite the base weights; the saved LoRA must fit the original base."""
    from peft.utils import set_peft_model_state_dict

    transformer = fresh_transformer(tiny_model_dir)
    base_out = _out(transformer)
    project = lora_project(tmp_path, lora_init_type=init, lora_rank=4, lora_alpha=8)
    params = add_lora(transformer, project)
    assert params and all(p.dtype == torch.float32 for p in params)
    untrained = _out(transformer)
    if init in ("default", "pissa", "olora"):  # exact decompositions: the start is the base model
        assert torch.allclose(untrained, base_out, atol=1e-4)
    _perturb(params)
    trained = _out(transformer)
    sd = lora_state_dict(transformer)
    # Apply the file's adapter to an untouched base: the same function as the trained model.
    from peft import LoraConfig

    rank = next(v.shape[0] for k, v in sd.items() if ".lora_A." in k)
    assert rank == (8 if init in ("loftq", "olora", "pissa") else 4)
    other = fresh_transformer(tiny_model_dir)
    other.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules=sorted(adapted_layers(transformer)), init_lora_weights=False
        )
    )
    set_peft_model_state_dict(other, {k.removeprefix("transformer."): v for k, v in sd.items()})
    tolerance = 5e-2 if init == "loftq" else 1e-4  # LoftQ's base is an NF4 approximation
    assert torch.allclose(_out(other), trained, atol=tolerance)
    # Adapter off = the original base model (for PiSSA/OLoRA too), and back on = trained.
    set_adapter_enabled(transformer, False)
    assert torch.allclose(_out(transformer), base_out, atol=1e-4)
    set_adapter_enabled(transformer, True)
    assert torch.allclose(_out(transformer), trained, atol=1e-6)
    # Resume: the saved state loads back into a freshly made adapter of the same kind.
    again = fresh_transformer(tiny_model_dir)
    add_lora(again, project)
    load_lora_state(again, sd)
    assert torch.allclose(_out(again), trained, atol=1e-5)


def test_loftq_without_cuda_is_a_clear_error(tmp_path, tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: LoftQ works here")
    transformer = fresh_transformer(tiny_model_dir)
    with pytest.raises(LoraError) as err:
        add_lora(transformer, lora_project(tmp_path, lora_init_type="loftq"))
    assert err.value.key == "lora.lora_init_type" and "CUDA" in err.value.message


# --------------------------------------------------------------------------- LoKr


def test_lokr_constructs_trains_saves_and_resumes(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    transformer = fresh_transformer(tiny_model_dir)
    base = _out(transformer)
    project = lora_project(tmp_path, lora_type="lycoris", lora_rank=4, lokr_factor=4)
    params = add_lora(transformer, project)
    assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params)
    assert {id(p) for p in transformer.parameters() if p.requires_grad} <= {id(p) for p in params}
    assert torch.allclose(_out(transformer), base, atol=1e-6)  # LoKr starts as a no-op
    opt = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(2):
        loss = _out_grad(transformer).pow(2).mean()
        loss.backward()
        assert sum(float(p.grad.abs().sum()) for p in params if p.grad is not None) > 0
        opt.step()
        opt.zero_grad()
    trained = _out(transformer)
    assert not torch.allclose(trained, base)
    set_adapter_enabled(transformer, False)
    assert torch.allclose(_out(transformer), base, atol=1e-6)
    set_adapter_enabled(transformer, True)

    paths = save_lora(transformer, tmp_path / "out", comfyui=True)
    saved = load_file(paths[0])
    assert any(k.startswith("lycoris_transformer_blocks_0_attn_to_q.lokr_w") for k in saved)
    assert load_file(paths[1]).keys() == saved.keys()

    again = fresh_transformer(tiny_model_dir)
    add_lora(again, project)
    load_lora_state(again, lora_state_dict(transformer))
    assert torch.allclose(_out(again), trained, atol=1e-6)


def _out_grad(transformer):
    gen = torch.Generator().manual_seed(1)
    return transformer(
        hidden_states=torch.randn(1, 16, 64, generator=gen),
        encoder_hidden_states=torch.randn(1, 8, 32, generator=gen),
        pooled_projections=torch.randn(1, 32, generator=gen),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(16, 3),
        txt_ids=torch.zeros(8, 3),
        guidance=torch.tensor([1.0]),
        return_dict=False,
    )[0]


# --------------------------------------------------------------------------- ComfyUI export


def _delta(a, b, scale):
    return (b.float() @ a.float()) * scale


def test_comfyui_export_round_trips_through_diffusers_converter():
    """Full-size shapes (the converter hard-codes Flux's widths), two blocks of each kind."""
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    from fluxtui.core.lora_targets import LORA_TARGET_PRESETS
    from fluxtui.trainer.comfyui import to_comfyui

    hidden, mlp, rank = 3072, 12288, 2
    shapes = {  # layer -> (in, out)
        "attn.to_q": (hidden, hidden),
        "attn.to_k": (hidden, hidden),
        "attn.to_v": (hidden, hidden),
        "attn.to_out.0": (hidden, hidden),
        "attn.add_q_proj": (hidden, hidden),
        "attn.add_k_proj": (hidden, hidden),
        "attn.add_v_proj": (hidden, hidden),
        "attn.to_add_out": (hidden, hidden),
        "ff.net.0.proj": (hidden, mlp),
        "ff.net.2": (mlp, hidden),
        "ff_context.net.0.proj": (hidden, mlp),
        "ff_context.net.2": (mlp, hidden),
        "proj_mlp": (hidden, mlp),
        "proj_out": (hidden + mlp, hidden),
    }
    gen = torch.Generator().manual_seed(0)
    for preset, alpha in (("all", None), ("all+ffs", 8.0)):
        suffixes = LORA_TARGET_PRESETS[preset]
        sd = {}
        for block in ("transformer_blocks.3", "single_transformer_blocks.5"):
            single = block.startswith("single")
            for layer in suffixes:
                if single and layer not in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"):
                    continue
                if not single and layer in ("proj_mlp", "proj_out"):
                    continue
                fan_in, fan_out = shapes[layer]
                sd[f"transformer.{block}.{layer}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen)
                sd[f"transformer.{block}.{layer}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen)
        kohya = to_comfyui(sd, alpha=alpha)
        assert "lora_unet_double_blocks_3_img_attn_qkv.lora_down.weight" in kohya
        assert "lora_unet_single_blocks_5_linear1.lora_up.weight" in kohya
        back = _convert_kohya_flux_lora_to_diffusers(dict(kohya))
        scale = (alpha or rank) / rank
        for key, a in sd.items():
            if ".lora_A." not in key:
                continue
            b = sd[key.replace("lora_A", "lora_B")]
            a2, b2 = back[key], back[key.replace("lora_A", "lora_B")]
            if alpha is None:  # scale 1: literally the same tensors
                assert torch.equal(a2, a) and torch.equal(b2, b), key
            else:  # diffusers folds the scale into the factors: a2 = c*a, b2 = d*b with c*d = scale
                c, d = float((a2 * a).sum() / (a * a).sum()), float((b2 * b).sum() / (b * b).sum())
                assert torch.allclose(a2, a * c) and torch.allclose(b2, b * d), key
                assert c * d == pytest.approx(scale), key
        extra = set(back) - set(sd)
        if preset == "all":  # proj_mlp is part of linear1: it comes back as a zero LoRA
            assert extra and all("proj_mlp" in k and not back[k].any() for k in extra)
        else:
            assert not extra


def test_comfyui_file_from_a_trained_tiny_lora(tmp_path, tiny_model_dir):
    """The fused layers apply exactly the same change as the diffusers layers they replace."""
    from safetensors.torch import load_file

    transformer = fresh_transformer(tiny_model_dir)
    project = lora_project(tmp_path, flux_lora_target="all+ffs", lora_rank=4, lora_alpha=2)
    _perturb(add_lora(transformer, project))
    paths = save_lora(transformer, tmp_path / "out", comfyui=True)
    assert [p.name for p in paths] == ["pytorch_lora_weights.safetensors", "pytorch_lora_weights_comfyui.safetensors"]
    kohya = load_file(paths[1])
    sd = lora_state_dict(transformer)

    def delta(prefix):
        return _delta(sd[f"{prefix}.lora_A.weight"], sd[f"{prefix}.lora_B.weight"], 2 / 4)

    def fused(name):
        down, up = kohya[f"lora_unet_{name}.lora_down.weight"], kohya[f"lora_unet_{name}.lora_up.weight"]
        return _delta(down, up, float(kohya[f"lora_unet_{name}.alpha"]) / down.shape[0])

    t = "transformer.transformer_blocks.0"
    qkv = torch.cat([delta(f"{t}.attn.to_q"), delta(f"{t}.attn.to_k"), delta(f"{t}.attn.to_v")])
    assert torch.allclose(fused("double_blocks_0_img_attn_qkv"), qkv, atol=1e-6)
    assert torch.allclose(fused("double_blocks_0_txt_mlp_2"), delta(f"{t}.ff_context.net.2"), atol=1e-6)
    s = "transformer.single_transformer_blocks.1"
    linear1 = torch.cat(
        [delta(f"{s}.attn.to_q"), delta(f"{s}.attn.to_k"), delta(f"{s}.attn.to_v"), delta(f"{s}.proj_mlp")]
    )
    assert torch.allclose(fused("single_blocks_1_linear1"), linear1, atol=1e-6)
    assert torch.allclose(fused("single_blocks_1_linear2"), delta(f"{s}.proj_out"), atol=1e-6)
    assert len([k for k in kohya if k.endswith(".alpha")]) == 1 * 8 + 2 * 2  # fused layers per block


# --------------------------------------------------------------------------- init_lora


@pytest.mark.parametrize("base_precision", ["no_change", "int8-quanto"])
def test_init_lora_starts_from_a_saved_file(base_precision, tmp_path, tiny_model_dir):
    from fluxtui.trainer.quantise import quantise

    first = fresh_transformer(tiny_model_dir)
    _perturb(add_lora(first, lora_project(tmp_path / "a", lora_rank=4, lora_alpha=8)))
    path = save_lora(first, tmp_path / "first")[0]

    second = fresh_transformer(tiny_model_dir)
    reference = fresh_transformer(tiny_model_dir)
    quantise(second, base_precision)
    quantise(reference, base_precision)
    # A different alpha: the loaded weights are rescaled so the adapter does the same thing.
    project = lora_project(tmp_path / "b", lora_rank=4, lora_alpha=4, init_lora=str(path))
    params = add_lora(second, project)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)
    add_lora(reference, lora_project(tmp_path / "c", lora_rank=4, lora_alpha=8))
    load_lora_state(reference, lora_state_dict(first))
    assert not torch.allclose(_out(second), _out(fresh_transformer(tiny_model_dir)), atol=1e-4)
    assert torch.allclose(_out(second), _out(reference), atol=1e-5)


def test_init_lora_problems_name_the_option(tmp_path, tiny_model_dir):
    first = fresh_transformer(tiny_model_dir)
    add_lora(first, lora_project(tmp_path / "a", lora_rank=4))
    path = save_lora(first, tmp_path / "first")[0]
    cases = [
        ({"lora_rank": 8, "init_lora": str(path)}, "lora_rank = 4"),
        ({"lora_rank": 4, "init_lora": str(tmp_path / "missing.safetensors")}, "does not exist"),
        ({"lora_rank": 4, "flux_lora_target": "mmdit", "init_lora": str(path)}, "does not target"),
    ]
    for i, (options, needle) in enumerate(cases):
        with pytest.raises(LoraError) as err:
            add_lora(fresh_transformer(tiny_model_dir), lora_project(tmp_path / f"p{i}", **options))
        assert err.value.key == "lora.init_lora"
        assert needle in err.value.message
