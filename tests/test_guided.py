"""The transformer as validation sampling sees it (trainer/guided.py), on the tiny transformer:
the T5 mask the run trained with, and real CFG with its rescale."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fluxtui.trainer import flow  # noqa: E402
from fluxtui.trainer.guided import GuidedTransformer  # noqa: E402

TEXT_LEN = 8


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    from diffusers import FluxTransformer2DModel

    from fluxtui.trainer.tiny import ensure_tiny_flux

    t = FluxTransformer2DModel.from_pretrained(
        ensure_tiny_flux(tmp_path_factory.mktemp("tiny"), seed=0) / "transformer"
    )
    return t.eval()


def _call(text: torch.Tensor) -> dict:
    """What FluxPipeline passes per step (no mask: diffusers' pipeline has none)."""
    g = torch.Generator().manual_seed(0)
    return {
        "hidden_states": flow.pack_latents(torch.randn(1, 16, 8, 8, generator=g)),
        "timestep": torch.tensor([0.5]),
        "guidance": torch.ones(1),
        "pooled_projections": torch.randn(1, 32, generator=g),
        "encoder_hidden_states": text,
        "txt_ids": flow.text_ids(TEXT_LEN),
        "img_ids": flow.image_ids(8, 8),
        "joint_attention_kwargs": None,
        "return_dict": False,
    }


def _text(seed: int) -> torch.Tensor:
    return torch.randn(1, TEXT_LEN, 32, generator=torch.Generator().manual_seed(seed))


def test_the_t5_mask_reaches_sampling_when_the_run_trained_with_it(transformer):
    mask = torch.ones(1, TEXT_LEN)
    mask[:, 5:] = 0
    text, other_padding = _text(1), _text(1)
    other_padding[:, 5:] = _text(2)[:, 5:]
    with torch.no_grad():
        masked = GuidedTransformer(transformer, masked=True)
        masked.prompt(mask)
        a, b = masked(**_call(text))[0], masked(**_call(other_padding))[0]
        plain = GuidedTransformer(transformer, masked=False)
        plain.prompt(mask)
        c, d = plain(**_call(text))[0], plain(**_call(other_padding))[0]
    assert torch.allclose(a, b, atol=1e-5)  # padding hidden, as in training (libreflux)
    assert not torch.allclose(c, d, atol=1e-3)


def test_real_cfg_is_done_inside_with_the_rescale(transformer):
    pos_text, neg_text = _text(3), _text(4)
    pooled_neg = torch.randn(1, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pos = transformer(**_call(pos_text))[0]
        neg = transformer(**{**_call(neg_text), "pooled_projections": pooled_neg})[0]
        guided = GuidedTransformer(transformer, masked=False, cfg_scale=3.0, rescale=0.7)
        guided.prompt(None, (neg_text, pooled_neg, None))
        out = guided(**_call(pos_text))[0]
        no_cfg = GuidedTransformer(transformer, masked=False, cfg_scale=1.0)
        no_cfg.prompt(None, (neg_text, pooled_neg, None))
        same = no_cfg(**_call(pos_text))[0]
    assert torch.allclose(out, flow.real_cfg(pos, neg, 3.0, 0.7), atol=1e-5)
    assert torch.allclose(same, pos, atol=1e-6)
    assert guided.config.in_channels == transformer.config.in_channels  # the pipeline reads it through


def test_libreflux_samples_masked_as_it_was_trained(tmp_path):
    from conftest import TINY, make_project

    from fluxtui.trainer.validation import masked_sampling

    project = make_project(tmp_path / "a", TINY)
    assert not masked_sampling(project, "dev")
    assert masked_sampling(project, "libreflux")  # the model itself was trained with the mask
    masked = make_project(tmp_path / "b", TINY + "[training]\nflux_attention_masked_training = true\n")
    assert masked_sampling(masked, "dev")
