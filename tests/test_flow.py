"""Flow-matching math (trainer/flow.py) on fixed tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from fluxtui.trainer import flow  # noqa: E402


def test_logit_normal_is_sigmoid_of_a_normal_draw():
    a = flow.logit_normal_sigmas(1000, torch.Generator().manual_seed(3))
    b = torch.sigmoid(torch.randn(1000, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(a, b)
    assert a.min() > 0 and a.max() < 1
    assert abs(float(a.median()) - 0.5) < 0.05


def test_fixed_shift():
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.equal(flow.shift_sigmas(s, 1.0), s)
    shifted = flow.shift_sigmas(s, 3.0)
    assert shifted.tolist() == pytest.approx([0.0, 0.5, 0.75, 1.0])
    assert (shifted >= s).all()  # s > 1 moves towards noise


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [(1024, 3.16), (512, 1.88), (256, math.exp(0.5))],
)
def test_auto_shift_by_resolution(pixels, expected):
    seq = (pixels // 8 // 2) ** 2  # latent 2x2 patches
    assert flow.auto_shift(seq) == pytest.approx(expected, abs=0.01)


def test_auto_shift_line_ends():
    assert math.log(flow.auto_shift(256)) == pytest.approx(0.5)
    assert math.log(flow.auto_shift(4096)) == pytest.approx(1.15)


def test_fast_schedule_uses_its_few_sigmas_and_no_shift():
    g = torch.Generator().manual_seed(0)
    s = flow.sample_sigmas(500, image_seq_len=4096, shift=3.0, fast=True, generator=g)
    assert set(s.tolist()) <= set(flow.FAST_SCHEDULE_SIGMAS)
    assert (s == 1.0).float().mean() > 0.5


def test_sample_sigmas_auto_and_fixed():
    base = flow.logit_normal_sigmas(8, torch.Generator().manual_seed(1))
    fixed = flow.sample_sigmas(8, image_seq_len=16, shift=2.0, generator=torch.Generator().manual_seed(1))
    auto = flow.sample_sigmas(8, image_seq_len=1024, shift=2.0, auto=True, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(fixed, flow.shift_sigmas(base, 2.0))
    assert torch.allclose(auto, flow.shift_sigmas(base, flow.auto_shift(1024)))


def test_noisy_latents_and_target():
    x0 = torch.randn(2, 4, 8)
    noise = torch.randn(2, 4, 8)
    assert torch.equal(flow.noisy_latents(x0, noise, torch.zeros(2)), x0)
    assert torch.equal(flow.noisy_latents(x0, noise, torch.ones(2)), noise)
    mixed = flow.noisy_latents(x0, noise, torch.tensor([0.25, 0.75]))
    assert torch.allclose(mixed[0], 0.75 * x0[0] + 0.25 * noise[0])
    assert torch.allclose(mixed[1], 0.25 * x0[1] + 0.75 * noise[1])
    # the velocity target is d(noisy)/d(sigma)
    eps = 1e-3
    diff = (
        flow.noisy_latents(x0, noise, torch.full((2,), 0.5 + eps))
        - flow.noisy_latents(x0, noise, torch.full((2,), 0.5))
    ) / eps
    assert torch.allclose(diff, flow.flow_target(x0, noise), atol=1e-2)


def test_mse_and_masked_loss():
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [3.0, 3.0]]])
    assert float(flow.flow_loss(pred, target)) == pytest.approx((1 + 4 + 0 + 9) / 4)
    weight = torch.tensor([[[1.0], [1.0], [0.0], [0.0]]])  # only the first two tokens count
    assert float(flow.flow_loss(pred, target, weight)) == pytest.approx((1 + 4) / 2)
    assert float(flow.flow_loss(pred, target, torch.ones(1, 4, 1))) == pytest.approx(
        float(flow.flow_loss(pred, target))
    )


def test_normalise_latents():
    raw = torch.tensor([1.1159])
    assert float(flow.normalise_latents(raw, 0.1159, 0.3611)) == pytest.approx(0.3611)


def test_pack_matches_diffusers_and_round_trips():
    from diffusers import FluxPipeline

    lat = torch.randn(2, 16, 6, 8)
    packed = flow.pack_latents(lat)
    assert packed.shape == (2, 12, 64)
    assert torch.equal(packed, FluxPipeline._pack_latents(lat, 2, 16, 6, 8))
    assert torch.equal(flow.unpack_latents(packed, 6, 8), lat)
    ids = flow.image_ids(6, 8)
    assert torch.equal(ids, FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))
    assert torch.equal(flow.text_ids(5), torch.zeros(5, 3))


def test_guidance_only_with_guidance_embeddings():
    assert flow.guidance_vector(3, 3.5, has_guidance=False) is None
    assert flow.guidance_vector(3, 3.5, has_guidance=True).tolist() == [3.5, 3.5, 3.5]


def test_joint_attention_mask_hides_t5_padding_only():
    t5_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    m = flow.joint_attention_mask(t5_mask, image_tokens=3)
    assert m.shape == (2, 1, 1, 7) and m.dtype == torch.bool
    assert m[0, 0, 0].tolist() == [True, True, False, False, True, True, True]
    assert m[1, 0, 0].tolist() == [True, True, True, False, True, True, True]


def test_mask_weights_follow_the_packing():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0  # top half
    w = flow.mask_weights(mask, latent_channels=16)
    assert w.shape == (1, 4, 64)
    assert w[0, :2].eq(1).all() and w[0, 2:].eq(0).all()  # tokens are row-major 2x2 patches


# -- SimpleTuner's meanings: shift 0, guidance ranges, CFG rescale, clipping ---------------------


def test_shift_0_means_the_unshifted_schedule_and_empty_means_3():
    assert flow.fixed_shift(None) == 3.0
    assert flow.fixed_shift(0) == 1.0 and flow.fixed_shift(0.0) == 1.0
    assert flow.fixed_shift(1.5) == 1.5
    # the sigmas the loop draws with flow_schedule_shift = 0: the plain logit-normal ones,
    # not all zero (the old meaning: the model never saw noise)
    used = flow.sample_sigmas(
        512, image_seq_len=16, shift=flow.fixed_shift(0), generator=torch.Generator().manual_seed(7)
    )
    plain = flow.logit_normal_sigmas(512, torch.Generator().manual_seed(7))
    assert torch.equal(used, plain)
    assert float(used.min()) > 0 and abs(float(used.median()) - 0.5) < 0.1
    default = flow.sample_sigmas(
        512, image_seq_len=16, shift=flow.fixed_shift(None), generator=torch.Generator().manual_seed(7)
    )
    assert torch.allclose(default, flow.shift_sigmas(plain, 3.0))


def test_guidance_constant_or_random_range():
    g = torch.Generator().manual_seed(0)
    assert flow.training_guidance(3, mode="constant", value=3.5, low=0, high=4, has_guidance=True).tolist() == [3.5] * 3
    drawn = flow.training_guidance(
        256, mode="random-range", value=1.0, low=1.5, high=4.0, has_guidance=True, generator=g
    )
    assert float(drawn.min()) >= 1.5 and float(drawn.max()) <= 4.0
    assert float(drawn.std()) > 0.5  # one value per sample, spread over the range
    assert flow.training_guidance(2, mode="random-range", value=1, low=0, high=4, has_guidance=False) is None


def test_real_cfg_and_its_rescale():
    pos = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(1))
    neg = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(2))
    guided = neg + 3.0 * (pos - neg)
    assert torch.allclose(flow.real_cfg(pos, neg, 3.0), guided)  # what FluxPipeline computes
    full = flow.real_cfg(pos, neg, 3.0, rescale=1.0)
    dims = (1, 2)
    assert torch.allclose(full.std(dim=dims), pos.std(dim=dims), atol=1e-5)  # spread of the positive
    half = flow.real_cfg(pos, neg, 3.0, rescale=0.5)
    assert torch.allclose(half, 0.5 * full + 0.5 * guided, atol=1e-6)


def test_value_clipping_clips_each_value_and_norm_clipping_scales():
    from fluxtui.trainer.optim import clip_gradients

    def params():
        a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
        a.grad, b.grad = torch.tensor([5.0, -0.5, 0.01]), torch.tensor([-3.0, 2.5])
        return [a, b]

    ps = params()
    before = math.sqrt(25 + 0.25 + 0.0001 + 9 + 6.25)
    norm = clip_gradients(ps, 2.0, "value")  # SimpleTuner's default: value clipping at 2.0
    assert norm == pytest.approx(before)  # reported: the norm before clipping
    assert ps[0].grad.tolist() == pytest.approx([2.0, -0.5, 0.01]) and ps[1].grad.tolist() == [-2.0, 2.0]

    ps = params()
    clip_gradients(ps, 0.01, "value")  # the quickstart's NF4 advice: every value within +-0.01
    assert all(float(p.grad.abs().max()) <= 0.01 + 1e-9 for p in ps)

    ps = params()
    clip_gradients(ps, 2.0, "norm")
    total = math.sqrt(sum(float((p.grad**2).sum()) for p in ps))
    assert total == pytest.approx(2.0, rel=1e-5)
    assert ps[0].grad[0] / ps[0].grad[1] == pytest.approx(-10.0)  # direction kept

    ps = params()
    clip_gradients(ps, 0.0, "value")  # 0: no clipping
    assert ps[0].grad.tolist() == pytest.approx([5.0, -0.5, 0.01])
