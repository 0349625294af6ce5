"""LoRA on the tiny-random Flux transformer: presets, init types, LoKr, file formats."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from fluxtui.core import config  # noqa: E402
from fluxtui.trainer.lora import add_lora, lora_state_dict, save_lora, set_adapter_enabled  # noqa: E402
from fluxtui.trainer.models import encode_prompts, load_models  # noqa: E402

CPU = torch.device("cpu")

TINY = """
[model]
model_flavour = "tiny-random"
base_model_precision = "no_change"
text_encoder_2_precision = "no_change"
"""


def make_project(ws: Path, text: str = TINY):
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(text)
    project, problems = config.load(ws)
    assert project is not None, problems
    return project


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


@pytest.fixture(scope="module")
def tiny_transformer_dir(tmp_path_factory) -> Path:
    from fluxtui.trainer.tiny import ensure_tiny_flux

    return ensure_tiny_flux(tmp_path_factory.mktemp("models"), seed=0)


def fresh_transformer(folder: Path):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")


@pytest.mark.parametrize("preset", LORA_TARGETS)
def test_every_preset_on_the_tiny_model(preset, tmp_path, tiny_transformer_dir):
    transformer = fresh_transformer(tiny_transformer_dir)
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
def test_init_types_construct_and_save_against_the_original_base(init, tmp_path, tiny_transformer_dir):
    """PiSSA/OLoRA/LoftQ rewrite the base weights; the saved LoRA must fit the original base."""
    from peft.utils import set_peft_model_state_dict

    transformer = fresh_transformer(tiny_transformer_dir)
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
    other = fresh_transformer(tiny_transformer_dir)
    other.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules=sorted(adapted_layers(transformer)), init_lora_weights=False
        )
    )
    set_peft_model_state_dict(other, {k.removeprefix("transformer."): v for k, v in sd.items()})
    tolerance = 5e-2 if init == "loftq" else 1e-4  # LoftQ's base is an NF4 approximation
    assert torch.allclose(_out(other), trained, atol=tolerance)
    # Resume: the saved state loads back into a freshly made adapter of the same kind.
    again = fresh_transformer(tiny_transformer_dir)
    add_lora(again, project)
    load_lora_state(again, sd)
    assert torch.allclose(_out(again), trained, atol=1e-5)


def test_loftq_without_cuda_is_a_clear_error(tmp_path, tiny_transformer_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: LoftQ works here")
    transformer = fresh_transformer(tiny_transformer_dir)
    with pytest.raises(LoraError) as err:
        add_lora(transformer, lora_project(tmp_path, lora_init_type="loftq"))
    assert err.value.key == "lora.lora_init_type" and "CUDA" in err.value.message
