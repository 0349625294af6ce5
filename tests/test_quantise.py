"""Quantised bases on the tiny transformer: forward works, a LoRA on top trains, the base stays frozen."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_project

torch = pytest.importorskip("torch")
pytest.importorskip("optimum.quanto")

from fluxtui.core.flux_arch import QUANTISE_EXCLUDE  # noqa: E402
from fluxtui.trainer.lora import LoraError, add_lora, set_adapter_enabled  # noqa: E402
from fluxtui.trainer.quantise import TRANSFORMER_EXCLUDE, is_quantised, quantise  # noqa: E402


def transformer(folder: Path):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")


def inputs(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(2, 16, 64, generator=gen),
        "encoder_hidden_states": torch.randn(2, 8, 32, generator=gen),
        "pooled_projections": torch.randn(2, 32, generator=gen),
        "timestep": torch.tensor([0.3, 0.7]),
        "img_ids": torch.zeros(16, 3),
        "txt_ids": torch.zeros(8, 3),
        "guidance": torch.ones(2),
        "return_dict": False,
    }


def check_quantised_training(model, precision: str, kind: str, tmp_path: Path, max_err: float) -> None:
    x = inputs()
    reference = model(**x)[0].detach()
    quantise(model, precision, exclude=TRANSFORMER_EXCLUDE)
    assert is_quantised(model) == kind
    # The kept layers are still plain float Linear layers.
    assert type(model.proj_out) is torch.nn.Linear and type(model.x_embedder) is torch.nn.Linear
    out = model(**x)[0].detach()
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert (out - reference).abs().mean() < max_err * reference.abs().mean()

    project = make_project(tmp_path / "ws", f'[model]\nbase_model_precision = "{precision}"\n[lora]\nlora_rank = 4\n')
    params = add_lora(model, project)
    assert all(p.dtype == torch.float32 for p in params)
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in params}
    opt = torch.optim.AdamW(params, lr=1e-2)
    target = torch.zeros_like(reference)
    losses = []
    for _ in range(3):
        loss = (model(**x)[0] - target).pow(2).mean()
        loss.backward()
        assert sum(float(p.grad.abs().sum()) for p in params if p.grad is not None) > 0
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # The base did not move: with the adapter off, the quantised model's output is unchanged.
    assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" not in n)
    set_adapter_enabled(model, False)
    assert torch.allclose(model(**x)[0].detach(), out, atol=1e-6)


@pytest.mark.parametrize(
    ("precision", "max_err"),
    [
        ("int8-quanto", 0.05),
        ("fp8-quanto", 0.2),
        # qint2 packs its weights with the same C++ extension as qint4: compiled on first use.
        pytest.param("int2-quanto", 1.5, marks=pytest.mark.int4),
    ],
)
def test_quanto_base_trains_a_lora(precision, max_err, tiny_model_dir, tmp_path):
    check_quantised_training(transformer(tiny_model_dir), precision, "quanto", tmp_path, max_err)


@pytest.mark.int4
def test_int4_quanto_base_trains_a_lora(tiny_model_dir, tmp_path):
    """The first qint4 use compiles quanto's C++ extension (~40 s, needs g++ and ninja)."""
    check_quantised_training(transformer(tiny_model_dir), "int4-quanto", "quanto", tmp_path, 0.5)


def test_nf4_base_trains_a_lora(tiny_model_dir, tmp_path):
    import bitsandbytes as bnb

    model = transformer(tiny_model_dir)
    check_quantised_training(model, "nf4-bnb", "bnb", tmp_path, 0.3)
    assert isinstance(model.transformer_blocks[0].attn.to_q.base_layer, bnb.nn.Linear4bit)
    assert model.transformer_blocks[0].attn.to_q.base_layer.weight.bnb_quantized


def test_pissa_on_a_quantised_base_is_refused(tiny_model_dir, tmp_path):
    model = transformer(tiny_model_dir)
    quantise(model, "int8-quanto")
    project = make_project(
        tmp_path / "ws", '[model]\nbase_model_precision = "int8-quanto"\n[lora]\nlora_init_type = "pissa"\n'
    )
    with pytest.raises(LoraError) as err:
        add_lora(model, project)
    assert err.value.key == "lora.lora_init_type"


def test_exclusions_are_the_estimators():
    assert tuple(TRANSFORMER_EXCLUDE) == tuple(QUANTISE_EXCLUDE)


def test_no_change_is_a_no_op(tiny_model_dir):
    model = transformer(tiny_model_dir)
    quantise(model, "no_change")
    assert is_quantised(model) is None


@pytest.mark.parametrize("precision", ["int8-quanto", "nf4-bnb"])
def test_block_by_block_onto_a_device_gives_the_same_model(precision, tiny_model_dir):
    """quantize_via = accelerator streams blocks to the device; same result as all at once."""
    from fluxtui.trainer.quantise import _units

    whole, streamed = transformer(tiny_model_dir), transformer(tiny_model_dir)
    units = _units(streamed)
    assert "transformer_blocks.0" in units and "single_transformer_blocks.1" in units and "proj_out" in units
    quantise(whole, precision, exclude=TRANSFORMER_EXCLUDE)
    quantise(streamed, precision, exclude=TRANSFORMER_EXCLUDE, device="cpu")
    assert [type(m).__name__ for m in whole.modules()] == [type(m).__name__ for m in streamed.modules()]
    assert torch.equal(whole(**inputs())[0], streamed(**inputs())[0])
