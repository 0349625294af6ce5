"""`fluxtui init DIR [--demo]`."""

from __future__ import annotations

from fluxtui.core import workspace

from .common import fail, paint


def main(args) -> int:
    try:
        ws = workspace.init(args.workspace, demo=args.demo)
    except workspace.WorkspaceExists as e:
        return fail(f"{e}. Pick another folder, or edit the existing project.toml.")
    except OSError as e:
        return fail(f"cannot create {args.workspace}: {e.strerror or e}", 1)
    print(f"{paint('created', 'green')} {ws.root}")
    if args.demo:
        print("  demo: tiny-random model (random weights, learns shapes and colours, nothing useful)")
        print(f"  train it:  fluxtui run {args.workspace}")
    else:
        print(f"  1. put images (+ .txt captions) in {ws.datasets_dir / 'my-images'}")
        print(f"  2. edit {ws.project_file}")
        print(f"  3. fluxtui validate {args.workspace}  then  fluxtui run {args.workspace}  (or just `fluxtui`)")
    return 0
