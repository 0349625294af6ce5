"""`fluxtui import SOURCE [DIR] [--force] [--copy-datasets] [--json]`: a SimpleTuner config as a
workspace. Prints what became of every key, then validates the result.

Exit 0 when every key is accounted for (set, converted, dropped or not supported, each with its
reason), 1 when some key was not understood (the workspace is written all the same and the
table names it), 2 on bad input or a workspace that would be overwritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fluxtui.core import preflight, rules
from fluxtui.core import simpletuner_import as si
from fluxtui.core.problems import has_errors

from .common import fail, load_project, paint, print_problems

_STYLE = {"set": "green", "converted": "cyan", "dropped": "yellow", "unsupported": "magenta", "unknown": "bold red"}


def main(args) -> int:
    try:
        plan = si.plan(args.source, copy_datasets=args.copy_datasets)
        dest = Path(args.workspace) if args.workspace else si.default_dir(plan.source, Path.cwd())
        project_file = si.write(plan, dest, force=args.force)
    except si.ImportProblem as e:
        return fail(str(e))
    except si.WorkspaceTaken as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"cannot write the workspace: {e.strerror or e} ({getattr(e, 'filename', '')})", 1)
    workspace = project_file.parent
    project, problems = load_project(workspace)
    if project is not None:
        problems = problems + rules.check_all(project)[1] + preflight.problems(project)
    valid = project is not None and not has_errors(problems)
    code = 1 if plan.lost else 0
    if args.json:
        payload = plan.to_json() | {
            "workspace": str(workspace),
            "lost": len(plan.lost),
            "validate": {"ok": valid, "problems": [p.to_json() for p in problems]},
        }
        print(json.dumps(payload, indent=2, default=str))
        return code
    _print_table(plan)
    counts = plan.to_json()["counts"]
    print(
        f"{paint('imported', 'green')} {plan.source} -> {project_file}: "
        + ", ".join(f"{n} {fate}" for fate, n in counts.items() if n)
    )
    if plan.lost:
        print(paint(f"{len(plan.lost)} key(s) not understood (marked unknown): check them by hand", "red"))
    print(f"\n{paint('validate', 'bold')} {workspace}")
    if problems:
        print_problems(problems)
    print(f"{paint('ok', 'green')}: ready to train" if valid else f"{paint('not ready', 'red')}: fix the errors above")
    return code


def _print_table(plan: si.Plan) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"SimpleTuner keys from {plan.source.name}", show_lines=False)
    for col in ("source key", "fate", "fluxtui option", "value", "why"):
        table.add_column(col, overflow="fold")
    for r in plan.rows:
        value = "" if r.value is None else json.dumps(r.value, default=str)
        if len(value) > 60:
            value = value[:57] + "..."
        cells = (
            escape(r.source),
            f"[{_STYLE[r.fate]}]{r.fate}[/]",
            escape(r.target or ""),
            escape(value),
            escape(r.note),
        )
        table.add_row(*cells)
    width = None if sys.stdout.isatty() else 160  # piped: wide enough for one line a key
    Console(file=sys.stdout, width=width).print(table)
