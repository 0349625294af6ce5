"""user_prompt_library: a JSON file of named validation prompts, as SimpleTuner reads it.

{"anime_<token>": "a breathtaking anime-style portrait of <token>", ...}: each name becomes a
validation image's file name, so characters a file name cannot hold (the quickstart's
`<token>` brackets, slashes) are replaced by "_" there; the name itself is kept for display.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


class PromptLibraryError(ValueError):
    """The file is missing or not a table of name -> prompt."""


def load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptLibraryError(f"cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise PromptLibraryError(f"is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise PromptLibraryError('must be a JSON object of "name": "prompt" pairs')
    out = {}
    for name, prompt in data.items():
        if isinstance(prompt, dict):  # newer SimpleTuner entries: {"prompt": ..., ...}
            prompt = prompt.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptLibraryError(f'entry "{name}" is not a prompt (a non-empty string)')
        out[str(name)] = prompt
    return out


def file_name(name: str) -> str:
    """A prompt name as a file name: anime_<token> -> anime__token_."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "prompt"
