"""How a bench prints what it measured: one JSON object (for CI and scripts) or one line a
number, floats to one decimal."""

from __future__ import annotations

import json


def emit(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
        return
    width = max(map(len, out), default=0) + 2
    for k, v in out.items():
        print(f"{k:{width}} {v:.1f}" if isinstance(v, float) else f"{k:{width}} {v}")
