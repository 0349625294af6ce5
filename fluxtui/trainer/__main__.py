"""`python -m fluxtui.trainer WORKSPACE --run RUN_ID [--fresh] [--resume PATH] [--max-steps N]`

The training process. The runner (core/runs.py) starts it, directly or under
`accelerate launch`, with stdout/stderr going to outputs/<run>/trainer.log. Exit status:
0 completed or stopped, 1 failed (events.jsonl's run.end says why), 130 when a second
SIGTERM/SIGINT cut it short.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fluxtui.trainer", description=__doc__.splitlines()[0])
    p.add_argument("workspace", type=Path, help="workspace folder (holds project.toml)")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="run id: outputs/<RUN_ID>/")
    p.add_argument("--fresh", action="store_true", help="start from step 0, ignoring checkpoints")
    p.add_argument("--resume", metavar="PATH", help="resume from this checkpoint folder")
    p.add_argument("--max-steps", type=int, metavar="N", help="train N steps (overrides the config)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resume and os.path.exists(args.resume):  # relative to where it was typed
        args.resume = os.path.abspath(args.resume)
    from .loop import train

    return train(args.workspace, args.run, fresh=args.fresh, resume=args.resume, max_steps=args.max_steps)


if __name__ == "__main__":
    from .control import leave

    leave(main())
