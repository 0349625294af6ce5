"""The bucketed batch stream, crops, and the latent/text caches (trainer/data.py, caches.py)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from fluxtui.trainer import data


def _datasets():
    a = data.SamplerDataset({1.0: [f"a{i}" for i in range(7)], 1.5: [f"w{i}" for i in range(3)]}, repeats=1)
    b = data.SamplerDataset({1.0: [f"b{i}" for i in range(5)]}, repeats=0, probability=0.5)
    return [a, b]


def _bucket_of(item: str) -> float:
    return 1.5 if item.startswith("w") else 1.0


def test_epoch_length_and_batches_never_mix_buckets():
    s = data.BucketSampler(_datasets(), batch_size=4, seed=1)
    # a: ceil(7*2/4)=4 + ceil(3*2/4)=2, b: ceil(5/4)=2
    assert s.epoch_length == 8
    for g in range(3 * s.epoch_length):
        batch = s.batch(g)
        assert len(batch.items) == 4
        assert {_bucket_of(i) for i in batch.items} == {batch.bucket}
        assert {i[0] for i in batch.items} <= ({"a", "w"} if batch.dataset == 0 else {"b"})
        assert batch.epoch == g // s.epoch_length + 1


def test_every_image_seen_repeats_plus_one_times_per_epoch():
    s = data.BucketSampler(_datasets(), batch_size=4, seed=2)
    seen = Counter(i for g in range(s.epoch_length) for i in s.batch(g).items)
    for i in range(7):
        assert seen[f"a{i}"] >= 2
    for i in range(3):
        assert seen[f"w{i}"] >= 2
    for i in range(5):
        assert seen[f"b{i}"] >= 1
    # short batches are refilled from the same bucket: total = batches x batch size
    assert sum(seen.values()) == s.epoch_length * 4


def test_deterministic_for_a_seed_and_resumable_anywhere():
    a = data.BucketSampler(_datasets(), batch_size=4, seed=7)
    b = data.BucketSampler(_datasets(), batch_size=4, seed=7)
    c = data.BucketSampler(_datasets(), batch_size=4, seed=8)
    order_a = [a.batch(g).items for g in range(20)]
    # a fresh sampler asked for batch 13 first (a resume) gives the same batch
    assert b.batch(13).items == order_a[13]
    assert [b.batch(g).items for g in range(20)] == order_a
    assert [c.batch(g).items for g in range(20)] != order_a
    # epochs differ from each other
    assert order_a[: a.epoch_length] != order_a[a.epoch_length : 2 * a.epoch_length]


def test_processes_take_interleaved_batches_of_one_order():
    s = data.BucketSampler(_datasets(), batch_size=2, seed=3)
    world = 2
    rank_batches = {r: [s.batch(pos + r).index for pos in range(0, 12, world)] for r in range(world)}
    assert rank_batches[0] == [0, 2, 4, 6, 8, 10]
    assert rank_batches[1] == [1, 3, 5, 7, 9, 11]


def test_probability_zero_leaves_a_dataset_out_and_weights_interleave():
    zero = data.SamplerDataset({1.0: ["z0", "z1"]}, probability=0.0)
    one = data.SamplerDataset({1.0: [f"o{i}" for i in range(40)]})
    s = data.BucketSampler([one, zero], batch_size=2, seed=0)
    assert s.epoch_length == 20
    assert all(s.batch(g).dataset == 0 for g in range(40))
    with pytest.raises(ValueError):
        data.BucketSampler([zero], batch_size=2, seed=0)
    # a heavy dataset's batches come early in the epoch more often than a light one's
    heavy = data.SamplerDataset({1.0: [f"h{i}" for i in range(20)]}, probability=10.0)
    light = data.SamplerDataset({1.0: [f"l{i}" for i in range(20)]}, probability=0.1)
    s = data.BucketSampler([heavy, light], batch_size=2, seed=0)
    first_half = [s.batch(g).dataset for g in range(10)]
    assert first_half.count(0) >= 8


def test_steps_for_epochs():
    assert data.steps_for_epochs(2, epoch_length=7, batches_per_step=2) == 7
    assert data.steps_for_epochs(1, epoch_length=8, batches_per_step=4) == 2


def test_caption_choice_is_reproducible():
    caps = ("one", "two", "three")
    picks = [data.pick_caption(caps, 5, g, 0) for g in range(30)]
    assert picks == [data.pick_caption(caps, 5, g, 0) for g in range(30)]
    assert set(picks) == set(caps)
    assert data.pick_caption(("only",), 5, 1, 1) == "only"


@pytest.mark.parametrize("style", ["center", "corner", "random"])
def test_crop_geometry_covers_the_target(style):
    g = data.geometry(300, 200, (128, 128), crop_style=style, rng_key="x.png")
    assert (g.target_w, g.target_h) == (128, 128)
    assert g.resize_h == 128 and g.resize_w >= 128  # scaled to cover
    assert 0 <= g.left <= g.resize_w - 128 and 0 <= g.top <= g.resize_h - 128
    if style == "center":
        assert g.left == (g.resize_w - 128) // 2
    if style == "corner":
        assert (g.left, g.top) == (0, 0)
    again = data.geometry(300, 200, (128, 128), crop_style=style, rng_key="x.png")
    assert again == g  # the same image is cut the same way every run: caches stay valid


def test_no_crop_resizes_to_the_target():
    g = data.geometry(300, 200, (192, 128), crop_style="center")
    assert (g.resize_w, g.resize_h, g.left, g.top) == (192, 128, 0, 0)


def test_an_aspect_target_trims_only_the_alignment_sliver():
    # 1000x700 keeps its aspect: resized to cover 704x512 (732x512), then 28 px are cut
    g = data.geometry(1000, 700, (704, 512), crop_style="center")
    assert (g.resize_w, g.resize_h) == (732, 512)
    assert (g.target_w, g.target_h) == (704, 512) and g.left == (732 - 704) // 2 and g.top == 0


def test_apply_geometry_and_tensor():
    from PIL import Image

    im = Image.new("RGB", (300, 200), (255, 0, 0))
    out = data.apply_geometry(im, data.geometry(300, 200, (64, 64), crop_style="center"))
    assert out.size == (64, 64)
    t = data.to_tensor(out)
    assert t.shape == (3, 64, 64)
    assert float(t[0].mean()) == pytest.approx(1.0) and float(t[1].mean()) == pytest.approx(-1.0)


def test_downsample_size():
    ds = SimpleNamespace(maximum_image_size=1000, target_downsample_size=500, resolution_type="pixel")
    assert data.downsample_size(2000, 1500, ds) == (667, 500)
    assert data.downsample_size(900, 900, ds) is None
    ds = SimpleNamespace(maximum_image_size=1.0, target_downsample_size=0.25, resolution_type="area")
    assert data.downsample_size(2000, 1000, ds) == (707, 354)
    ds = SimpleNamespace(maximum_image_size=None, target_downsample_size=None, resolution_type="area")
    assert data.downsample_size(2000, 1000, ds) is None


# -- caches with the tiny VAE -------------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    from diffusers import AutoencoderKL

    from fluxtui.trainer.tiny import ensure_tiny_flux

    folder = ensure_tiny_flux(tmp_path_factory.mktemp("tiny"), seed=0)
    return AutoencoderKL.from_pretrained(folder / "vae")


def _entry(tmp_path: Path, name: str, size=(64, 64), colour=(0, 128, 255)):
    from PIL import Image

    from fluxtui.trainer import caches

    img = tmp_path / "images" / name
    img.parent.mkdir(exist_ok=True)
    Image.new("RGB", size, colour).save(img)
    info = SimpleNamespace(path=img, width=size[0], height=size[1], captions=("cap",), target=(64, 64))
    ds = SimpleNamespace(
        crop=False, crop_style="center", is_regularisation_data=False, maximum_image_size=None,
        target_downsample_size=None, resolution_type="pixel",
    )  # fmt: skip
    return lambda: caches.make_entry(0, ds, info, folder=tmp_path / "cache", vae_id="vae-a")


def test_latent_cache_writes_reuses_and_rebuilds_changed_images(tmp_path, tiny_vae):
    from fluxtui.trainer import caches

    make_a, make_b = _entry(tmp_path, "a.png"), _entry(tmp_path, "b.png", colour=(10, 10, 10))
    entries = [make_a(), make_b()]
    calls = []

    def run(es):
        calls.clear()
        return caches.cache_latents(
            es, tiny_vae, device="cpu", batch_size=4, progress=lambda d, n: calls.append((d, n)), failed=None
        )

    assert run(entries) == entries
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)
    lat, mask = caches.load_latent(entries[0])
    assert lat.shape == (16, 8, 8) and mask is None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]  # atomic writes

    run(entries)
    assert calls == [(2, 2)]  # warm: nothing encoded

    # the image changes (new content and mtime): its entry no longer matches the cache
    img = entries[0].image
    _entry(tmp_path, "a.png", colour=(255, 255, 0))
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    changed = [make_a(), entries[1]]
    assert not caches.is_cached(changed[0]) and caches.is_cached(changed[1])
    run(changed)
    assert calls[0] == (1, 2)
    assert not torch.equal(caches.load_latent(changed[0])[0], lat)


def test_undecodable_image_is_reported_and_left_out(tmp_path, tiny_vae):
    from fluxtui.trainer import caches

    good = _entry(tmp_path, "good.png")()
    bad = _entry(tmp_path, "bad.png")()
    raw = bytearray(bad.image.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 16):
        raw[i] ^= 0xFF
    bad.image.write_bytes(bytes(raw))  # header and end marker intact: only decoding fails
    failures = []
    kept = caches.cache_latents(
        [good, bad], tiny_vae, device="cpu", batch_size=2, progress=lambda d, n: None,
        failed=lambda e, why: failures.append((e.image.name, why)),
    )  # fmt: skip
    assert kept == [good]
    assert failures and failures[0][0] == "bad.png"


def test_text_cache_key_and_round_trip(tmp_path):
    from fluxtui.trainer import caches

    c1 = caches.TextCache(tmp_path, "enc-a", 32)
    assert c1.path("a cat") != caches.TextCache(tmp_path, "enc-b", 32).path("a cat")
    assert c1.path("a cat") != caches.TextCache(tmp_path, "enc-a", 64).path("a cat")
    assert c1.path("a cat") != c1.path("a dog")
    assert c1.missing(["a cat", "a cat"]) == ["a cat"]
    caches.atomic_save(
        {"t5": torch.ones(32, 4), "pooled": torch.zeros(8), "mask": torch.ones(32, dtype=torch.long)},
        c1.path("a cat"),
        {"caption": "a cat"},
    )
    assert c1.missing(["a cat"]) == []
    t5, pooled, mask = c1.load_batch(["a cat", "a cat"])
    assert t5.shape == (2, 32, 4) and pooled.shape == (2, 8) and mask.shape == (2, 32)


def test_crops_are_stable_across_processes():
    # random.Random with a string seed is hashed with sha512, not hash(): no PYTHONHASHSEED effect
    import subprocess
    import sys

    code = (
        "from fluxtui.trainer import data; print(data.geometry(500, 300, (128, 128), crop_style='random', rng_key='k'))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": s}
        ).stdout
        for s in ("1", "2")
    }
    assert len(outs) == 1 and "Geometry" in outs.pop()


def test_caption_dropout_gives_the_empty_caption_on_its_share_of_samples():
    caps = ("a photo of sks", "sks on a beach")
    picks = [data.pick_caption(caps, 3, g, s, dropout=0.25) for g in range(200) for s in range(2)]
    dropped = picks.count("")
    assert 60 < dropped < 140  # ~100 of 400
    assert set(picks) - {""} == set(caps)
    assert picks == [data.pick_caption(caps, 3, g, s, dropout=0.25) for g in range(200) for s in range(2)]
    assert "" not in [data.pick_caption(caps, 3, g, 0) for g in range(200)]
