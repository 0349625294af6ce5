"""EMA of the LoRA weights: the math on fixed tensors, and a real trainer run with use_ema."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fluxtui.trainer.ema import EMA, ema_decay_at, ema_update, validation_passes  # noqa: E402


def test_decay_ramps_up_and_is_capped():
    assert ema_decay_at(1, 0.995) == 0.0  # the first update copies the weights
    assert ema_decay_at(2, 0.995) == pytest.approx(2 / 11)
    assert ema_decay_at(11, 0.995) == pytest.approx(11 / 20)
    assert ema_decay_at(10_000, 0.995) == 0.995
    assert ema_decay_at(10_000, 0.9) == 0.9
    assert ema_decay_at(2, 0.995, min_decay=0.5) == 0.5


def test_update_moves_the_shadow_towards_the_weights():
    shadow = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    params = [torch.tensor([3.0, 0.0]), torch.tensor([[10.0]])]
    ema_update(shadow, params, 0.75)
    assert torch.allclose(shadow[0], torch.tensor([1.5, 1.5]))  # 0.75*1 + 0.25*3, 0.75*2 + 0.25*0
    assert torch.allclose(shadow[1], torch.tensor([[2.5]]))
    ema_update(shadow, params, 0.0)
    assert torch.equal(shadow[0], params[0])


def test_interval_applied_and_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(2))
    ema = EMA([p], decay=0.5, update_interval=2, device="cpu")
    with torch.no_grad():
        p.fill_(4.0)
    assert not ema.step(1)  # not on the interval
    assert torch.equal(ema.shadow[0], torch.zeros(2))
    assert ema.step(2) and ema.last_decay == pytest.approx(2 / 11)
    expected = torch.full((2,), 4.0 * (1 - 2 / 11))
    assert torch.allclose(ema.shadow[0], expected)
    with ema.applied():
        assert torch.allclose(p.detach(), expected)
    assert torch.equal(p.detach(), torch.full((2,), 4.0))  # trained weights back

    other = EMA([torch.nn.Parameter(torch.ones(2))], decay=0.5, update_interval=1, device="cpu")
    other.load_state_dict(ema.state_dict())
    assert torch.allclose(other.shadow[0], expected)
    with pytest.raises(ValueError):
        other.load_state_dict({})


def test_validation_passes_per_mode():
    p = torch.nn.Parameter(torch.zeros(1))
    ema = EMA([p], decay=0.5, update_interval=1, device="cpu")
    assert [s for s, _ in validation_passes(None, "comparison")] == [""]
    assert [s for s, _ in validation_passes(ema, "none")] == [""]
    assert [s for s, _ in validation_passes(ema, "ema_only")] == [""]
    assert [s for s, _ in validation_passes(ema, "comparison")] == ["", "-ema"]


@pytest.mark.slow
def test_use_ema_changes_the_saved_lora_and_survives_resume(tmp_path, tmp_path_factory):
    from safetensors.torch import load_file
    from trainer_support import events, make_workspace, run_trainer

    tiny_root = tmp_path_factory.getbasetemp() / "tiny-models"
    common = {
        "training.max_train_steps": 4,
        "training.checkpointing_steps": 2,
        "validation.validation_steps": 4,
        "training.learning_rate": 1e-2,
    }
    plain = make_workspace(tmp_path / "plain", common, tiny_root=tiny_root)
    averaged = make_workspace(
        tmp_path / "ema",
        {**common, "training.use_ema": True, "training.ema_decay": 0.9, "training.ema_update_interval": 1},
        tiny_root=tiny_root,
    )
    for ws in (plain, averaged):
        proc = run_trainer(ws, "r1")
        assert proc.returncode == 0, proc.stdout[-4000:]

    lora_file = "outputs/r1/lora/pytorch_lora_weights.safetensors"
    a, b = load_file(plain / lora_file), load_file(averaged / lora_file)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a), "EMA left the saved weights unchanged"
    # the checkpoint holds the trained weights (same as the plain run) and the EMA beside them
    ckpt = averaged / "outputs/r1/checkpoints/checkpoint-4"
    trained = load_file(ckpt / "pytorch_lora_weights.safetensors")
    assert all(torch.equal(trained[k], a[k]) for k in a)
    shadow = load_file(ckpt / "ema.safetensors")
    assert len(shadow) == len(b)
    assert not (plain / "outputs/r1/checkpoints/checkpoint-4/ema.safetensors").exists()
    # comparison (the default) renders both weight sets
    shots = sorted(p.name for p in (averaged / "outputs/r1/validation/step-4").glob("*.png"))
    assert shots == ["validation-64x64.png", "validation-ema-64x64.png"], shots

    proc = run_trainer(averaged, "r2", "--max-steps", "6")
    assert proc.returncode == 0, proc.stdout[-4000:]
    evs = events(averaged, "r2")
    assert evs[0]["resumed_from"] == 4
    assert not [e for e in evs if e["type"] == "warning" and e.get("key") == "training.use_ema"]
