"""Every optimizer in the schema builds from its real package and takes a step."""

from __future__ import annotations

import pytest
from conftest import make_project

torch = pytest.importorskip("torch")

from fluxtui.core import schema  # noqa: E402
from fluxtui.trainer.optim import OptimizerUnavailable, build_lr_scheduler, build_optimizer  # noqa: E402


@pytest.mark.parametrize("name", list(schema.OPTIMIZERS))
def test_optimizer_builds_and_steps(name, tmp_path):
    lr = 1.0 if name == "prodigy" else 1e-2
    project = make_project(tmp_path, f'[training]\noptimizer = "{name}"\nlearning_rate = {lr}\nlr_warmup_steps = 0\n')
    torch.manual_seed(0)
    # One tensor above bitsandbytes' 4096-element threshold so its 8-bit state is used.
    big = torch.nn.Parameter(torch.randn(64, 128))
    small = torch.nn.Parameter(torch.randn(8))
    before = [big.detach().clone(), small.detach().clone()]
    opt = build_optimizer([big, small], project)
    sched = build_lr_scheduler(opt, project, total_steps=10)
    for _ in range(2):
        loss = big.pow(2).sum() + small.pow(2).sum()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    assert not torch.equal(big, before[0])
    assert not torch.equal(small, before[1])
    if name.startswith("bnb-"):
        assert any(v.dtype == torch.uint8 for v in opt.state[big].values() if torch.is_tensor(v))


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    # lion-pytorch is a real package on PyPI that this environment does not install.
    monkeypatch.setitem(schema.OPTIMIZERS, "optimi-lion", "lion_pytorch")
    project = make_project(tmp_path, '[training]\noptimizer = "optimi-lion"\n')
    with pytest.raises(OptimizerUnavailable) as err:
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], project)
    assert err.value.key == "training.optimizer"
    assert "pip install lion-pytorch" in err.value.message
