"""core/gpu.py: NVML telemetry, and a clean "no GPU" state without one."""

from __future__ import annotations

import json
import subprocess
import sys

from fluxtui.core import gpu


def test_sample_never_raises_and_is_consistent():
    samples = gpu.sample()
    assert isinstance(samples, list)
    for s in samples:
        assert 0 <= s.used_mb <= s.total_mb and s.total_mb > 0
        assert s.util_pct is None or 0 <= s.util_pct <= 100
        assert s.name and json.loads(json.dumps(s.to_json()))["index"] == s.index
    assert gpu.sample(indices=[10_000]) == []
    # a child with CUDA_VISIBLE_DEVICES="" sees no GPU, whatever this machine has
    assert gpu.visible_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert gpu.visible_count({}) == len(samples)


def test_no_gpu_state_without_nvml():
    """Without the NVML library (no driver), sampling gives [] and counting gives 0."""
    code = (
        "import sys; sys.modules['pynvml'] = None\n"  # makes `import pynvml` fail
        "from fluxtui.core import gpu\n"
        "print(gpu.sample(), gpu.visible_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] 0"


def test_visible_indices_parse_cuda_visible_devices():
    assert gpu.visible_indices({}) is None
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": "0,2"}) == [0, 2]
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": "1,-1,3"}) == [1]  # CUDA stops at -1
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": "GPU-8a1b,MIG-x"}) == [-1, -1]
