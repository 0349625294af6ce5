"""The `fluxtui` command. Parses arguments and imports the heavy parts only when needed.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 130 interrupted.
Each subcommand lives in fluxtui/commands/<name>.py as `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2 with a short hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _workspace_arg(p: argparse.ArgumentParser, *, optional: bool = True) -> None:
    p.add_argument(
        "workspace",
        nargs="?" if optional else None,
        default=".",
        type=Path,
        help="workspace folder (default: the current folder)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fluxtui",
        description="Train Flux.1 LoRAs from one project.toml. Without a command: open the TUI here.",
    )
    parser.add_argument("--version", action="version", version=f"fluxtui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="create a workspace with a commented project.toml")
    p.add_argument("workspace", type=Path, help="folder to create")
    p.add_argument("--demo", action="store_true", help="tiny-random model and a generated dataset (trains on a CPU)")

    p = sub.add_parser("validate", help="check project.toml and the datasets")
    _workspace_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("estimate", help="VRAM estimate from the config alone")
    _workspace_arg(p)
    p.add_argument("--gpu-gb", type=float, metavar="N", help="say whether it fits a GPU of N GB and what would")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="validate, then train (headless)")
    _workspace_arg(p)
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints and start from step 0")
    p.add_argument("--detach", action="store_true", help="start in the background and print the run id")
    p.add_argument("--watch", action="store_true", help="restart when project.toml or the datasets change")
    p.add_argument("--every", type=int, default=10, metavar="N", help="when piped: one line every N steps")

    p = sub.add_parser("status", help="runs of a workspace and their state")
    _workspace_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("logs", help="print a run's trainer.log")
    _workspace_arg(p)
    p.add_argument("run", nargs="?", help="run id (default: the latest)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows")

    p = sub.add_parser("stop", help="stop the active run gracefully (checkpoint first)")
    _workspace_arg(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGTERM, then SIGKILL")

    p = sub.add_parser("probe", help="a short real run with random weights: peak VRAM and s/step")
    _workspace_arg(p)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("import", help="make a workspace from a SimpleTuner config (folder or file)")
    p.add_argument("source", type=Path, help="SimpleTuner folder, or its config.json / config.toml / config.env")
    p.add_argument("workspace", nargs="?", type=Path, help="workspace to create (default: named after the config)")
    p.add_argument("--force", action="store_true", help="replace an existing project.toml (kept as .before-import)")
    p.add_argument("--copy-datasets", action="store_true", help="copy the image folders into the workspace")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("export-simpletuner", help="write a SimpleTuner config.json + multidatabackend.json")
    p.add_argument("workspace", type=Path, help="workspace folder")
    p.add_argument("out", type=Path, help="folder to write the SimpleTuner files into")
    p.add_argument("--force", action="store_true", help="replace files already in OUT")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("tui", help="open the terminal UI")
    _workspace_arg(p)

    p = sub.add_parser("serve", help="the terminal UI in a browser (textual-serve)")
    _workspace_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    return parser


# Commands whose module name differs (`import` is a Python keyword).
_MODULES = {"import": "import_", "export-simpletuner": "export_simpletuner"}


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def tui_on_folder(argv: list[str], commands: set[str]) -> list[str]:
    """`fluxtui DIR` means `fluxtui tui DIR`. A command name always wins: a folder called
    `run` opens with `fluxtui ./run` (or `fluxtui tui run`); a word that is neither a command
    nor a folder stays a usage error, so a typo is not taken for a path."""
    if not argv or argv[0].startswith("-") or argv[0] in commands:
        return argv
    first = argv[0]
    if Path(first).is_dir() or os.sep in first:
        return ["tui", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = tui_on_folder(list(sys.argv[1:] if argv is None else argv), _command_names(parser))
    args = parser.parse_args(argv)
    command = args.command or "tui"
    if args.command is None:
        args.workspace = Path(".")
    module = importlib.import_module(f"fluxtui.commands.{_MODULES.get(command, command)}")
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `fluxtui status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
