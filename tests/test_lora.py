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
