"""`fluxtui export-simpletuner DIR OUT`: the project as SimpleTuner's config.json and
multidatabackend.json (+ lycoris and prompt-library files)."""

from __future__ import annotations

import json
from pathlib import Path

from fluxtui.core import simpletuner_export

from .common import fail, load_project, paint, print_problems


def main(args) -> int:
    project, problems = load_project(Path(args.workspace))
    if project is None:
        print_problems(problems)
        return fail(f"{args.workspace}: fix project.toml first (`fluxtui validate {args.workspace}`)")
    try:
        result = simpletuner_export.export(project, args.out, force=args.force)
    except simpletuner_export.ExportProblem as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"cannot write {args.out}: {e.strerror or e}", 1)
    if args.json:
        print(
            json.dumps(
                {"files": [str(f) for f in result.files], "left_out": result.left_out, "notes": result.notes}, indent=2
            )
        )
        return 0
    for f in result.files:
        print(f"{paint('wrote', 'green')} {f}")
    for dotted, why in result.left_out.items():
        print(f"{paint('left out', 'yellow')} {dotted}: {why}")
    for dotted, why in result.notes.items():
        print(f"{paint('note', 'yellow')} {dotted}: {why}")
    print(f"  run it there:  simpletuner train --config {Path(args.out).resolve() / 'config.json'}  (or train.sh)")
    return 0
