"""user_prompt_library: SimpleTuner's JSON of named validation prompts."""

from __future__ import annotations

import json

import pytest

from fluxtui.core import prompt_library


def test_quickstart_names_load_and_become_file_names(tmp_path):
    path = tmp_path / "lib.json"
    path.write_text(json.dumps({"anime_<token>": "an anime <token>", "photo": {"prompt": "a photo"}}))
    assert prompt_library.load(path) == {"anime_<token>": "an anime <token>", "photo": "a photo"}
    assert prompt_library.file_name("anime_<token>") == "anime__token_"
    assert prompt_library.file_name("a/b") == "a_b"


@pytest.mark.parametrize(
    ("text", "says"),
    [("[1, 2]", "JSON object"), ("{}", "JSON object"), ('{"x": 3}', 'entry "x"'), ("{nope", "not valid JSON")],
)
def test_bad_libraries_say_why(tmp_path, text, says):
    path = tmp_path / "lib.json"
    path.write_text(text)
    with pytest.raises(prompt_library.PromptLibraryError, match=says):
        prompt_library.load(path)
