"""TREAD routing and gradient checkpointing on the tiny transformer (trainer/blocks.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fluxtui.trainer import blocks, flow  # noqa: E402

TEXT_LEN = 8


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from fluxtui.trainer.tiny import ensure_tiny_flux

    return ensure_tiny_flux(tmp_path_factory.mktemp("tiny"), seed=0)


def _transformer(tiny_dir):
    from diffusers import FluxTransformer2DModel

    t = FluxTransformer2DModel.from_pretrained(tiny_dir / "transformer")
    t.train()
    return t


def _inputs(masked: bool = False):
    g = torch.Generator().manual_seed(0)
    x = flow.pack_latents(torch.randn(2, 16, 8, 8, generator=g))
    t5_mask = torch.ones(2, TEXT_LEN)
    t5_mask[:, 5:] = 0
    return {
        "hidden_states": x,
        "encoder_hidden_states": torch.randn(2, TEXT_LEN, 32, generator=g),
        "pooled_projections": torch.randn(2, 32, generator=g),
        "timestep": torch.tensor([0.3, 0.7]),
        "img_ids": flow.image_ids(8, 8),
        "txt_ids": flow.text_ids(TEXT_LEN),
        "guidance": torch.ones(2),
        "joint_attention_kwargs": {"attention_mask": flow.joint_attention_mask(t5_mask, x.shape[1])}
        if masked
        else None,
        "return_dict": False,
    }


def test_routes_resolve_negative_indices_and_reject_bad_ones():
    r = blocks.resolve_routes([{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}], 57)
    assert (r[0].start, r[0].end) == (2, 55)
    with pytest.raises(blocks.RouteError):
        blocks.resolve_routes([{"selection_ratio": 0.5, "start_layer_idx": 5, "end_layer_idx": 2}], 57)
    with pytest.raises(blocks.RouteError):
        blocks.resolve_routes([{"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": 60}], 57)
    with pytest.raises(blocks.RouteError, match="overlap"):
        blocks.resolve_routes(
            [
                {"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": 10},
                {"selection_ratio": 0.5, "start_layer_idx": 10, "end_layer_idx": 20},
            ],
            57,
        )


@pytest.mark.parametrize("masked", [False, True])
def test_tread_drops_image_tokens_only_and_restores_them(tiny_dir, masked):
    t = _transformer(tiny_dir)
    all_blocks = blocks.transformer_blocks(t)
    assert len(all_blocks) == 3  # tiny: 1 double + 2 single
    seen = []

    def record(i):
        def hook(module, args, kwargs):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            rope = kwargs.get("image_rotary_emb")
            seen.append((i, hidden.shape[1], text.shape[1], rope[0].shape[0] if rope else None))

        return hook

    # registered after the router's pre-hooks, so they see what the blocks really get
    router = blocks.TreadRouter(t, [{"selection_ratio": 0.5, "start_layer_idx": 1, "end_layer_idx": -1}])
    for i, b in enumerate(all_blocks):
        b.register_forward_pre_hook(record(i), with_kwargs=True)
    router.generator = torch.Generator().manual_seed(1)
    out = t(**_inputs(masked))[0]
    assert out.shape == (2, 16, 64)  # every image token is back
    # block 0 is outside the route: full; blocks 1-2 route: 8 of 16 image tokens, all 8 text tokens
    assert seen == [(0, 16, TEXT_LEN, TEXT_LEN + 16), (1, 8, TEXT_LEN, TEXT_LEN + 8), (2, 8, TEXT_LEN, TEXT_LEN + 8)]
    out.sum().backward()  # gradients flow through the gather and the scatter
    assert t.single_transformer_blocks[1].proj_out.weight.grad.abs().sum() > 0
    router.remove()


def test_tread_is_off_without_gradients_and_deterministic_per_generator(tiny_dir):
    t = _transformer(tiny_dir)
    with torch.no_grad():
        plain = t(**_inputs())[0]
    router = blocks.TreadRouter(t, [{"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": -2}])
    with torch.no_grad():
        assert torch.equal(t(**_inputs())[0], plain)  # sampling sees the whole image
    router.generator = torch.Generator().manual_seed(5)
    a = t(**_inputs())[0]
    router.generator = torch.Generator().manual_seed(5)
    b = t(**_inputs())[0]
    router.generator = torch.Generator().manual_seed(6)
    c = t(**_inputs())[0]
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)


@pytest.mark.parametrize("interval", [1, 2])
def test_gradient_checkpointing_same_result(tiny_dir, interval):
    ref = _transformer(tiny_dir)
    ckpt = _transformer(tiny_dir)
    n = blocks.enable_gradient_checkpointing(ckpt, interval)
    assert n == (3 if interval == 1 else 2)
    for model in (ref, ckpt):
        model.zero_grad()
        model(**_inputs(masked=True))[0].pow(2).mean().backward()
    for (name, p), q in zip(ref.named_parameters(), ckpt.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_checkpointing_and_tread_together(tiny_dir):
    t = _transformer(tiny_dir)
    blocks.enable_gradient_checkpointing(t, 1)
    router = blocks.TreadRouter(t, [{"selection_ratio": 0.25, "start_layer_idx": 0, "end_layer_idx": 1}])
    router.generator = torch.Generator().manual_seed(2)
    out = t(**_inputs(masked=True))[0]
    out.mean().backward()
    assert out.shape == (2, 16, 64)


def test_t5_attention_mask_hides_padding_from_the_image(tiny_dir):
    """With flux_attention_masked_training, what sits in T5's padding cannot reach the image."""
    t = _transformer(tiny_dir)
    t.eval()
    masked = _inputs(masked=True)
    noisy_padding = dict(masked)
    text = masked["encoder_hidden_states"].clone()
    text[:, 5:] = torch.randn(2, TEXT_LEN - 5, 32)  # positions 5.. are padding in the mask
    noisy_padding["encoder_hidden_states"] = text
    with torch.no_grad():
        a = t(**masked)[0]
        b = t(**noisy_padding)[0]
        unmasked_a = t(**{**masked, "joint_attention_kwargs": None})[0]
        unmasked_b = t(**{**noisy_padding, "joint_attention_kwargs": None})[0]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(unmasked_a, unmasked_b, atol=1e-3)
