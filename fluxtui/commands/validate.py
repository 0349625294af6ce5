"""`fluxtui validate DIR [--json]`: the config, the option rules and a scan of every dataset.

Exit 0 when a run could start (warnings allowed), 2 when something must be fixed first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fluxtui.core import preflight, rules
from fluxtui.core.datasets import DatasetReport
from fluxtui.core.problems import Problem, has_errors

from .common import load_project, paint, print_problems

SKIPPED_SHOWN = 20


def main(args) -> int:
    workspace = Path(args.workspace)
    project, problems = load_project(workspace)
    reports: list[DatasetReport] = []
    if project is not None:
        reports, more = rules.check_all(project)
        problems = problems + more + preflight.problems(project)
    ok = project is not None and not has_errors(problems)
    base = Path(workspace).resolve()
    if args.json:
        payload = {
            "ok": ok,
            "datasets": [r.to_json(base) for r in reports],
            "problems": [p.to_json() for p in problems],
        }
        print(json.dumps(payload, indent=2))
        return 0 if ok else 2
    for report in reports:
        print_report(report, base)
        print()
    _print_summary(problems, ok)
    return 0 if ok else 2


def print_report(report: DatasetReport, base: Path, stream=sys.stdout) -> None:
    def line(label: str, value: str) -> None:
        print(f"  {label:<10} {value}", file=stream)

    try:
        folder = report.folder.relative_to(base).as_posix()
    except ValueError:
        folder = str(report.folder)
    folder = report.source or folder
    print(paint(f"dataset {report.id}", "bold", stream) + paint(f"  ({folder})", "dim", stream), file=stream)
    line("images", f"{len(report.images)}  ({report.captioned} captioned)")
    if report.buckets:
        first = True
        for (w, h), items in report.buckets.items():
            line("buckets" if first else "", f"{w / h:.2f} {len(items):>7} images  -> {w}x{h}")
            first = False
    processes = f"{report.processes} process" + ("es" if report.processes != 1 else "")
    line("batches", f"{report.batches_per_epoch} per epoch per process ({processes})")
    if report.skipped:
        line("skipped", str(len(report.skipped)))
        for s in report.skipped[:SKIPPED_SHOWN]:
            try:
                name = s.path.relative_to(report.folder).as_posix()
            except ValueError:
                name = str(s.path)
            print(f"    {name}: {s.reason}", file=stream)
        if len(report.skipped) > SKIPPED_SHOWN:
            print(f"    ... and {len(report.skipped) - SKIPPED_SHOWN} more (--json lists all)", file=stream)


def _print_summary(problems: list[Problem], ok: bool) -> None:
    if problems:
        print_problems(problems)
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    if ok:
        tail = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
        print(f"{paint('ok', 'green')}: ready to train{tail}")
    else:
        print(f"{paint('not ready', 'red')}: {errors} error{'s' if errors != 1 else ''} to fix first")
