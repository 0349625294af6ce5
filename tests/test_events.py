"""events.jsonl: the writer checks the contract, the reader tails by byte offset."""

from __future__ import annotations

import json
import os

import pytest

from fluxtui.core.events import EVENT_FIELDS, EventReader, EventWriter, read_all


def test_writer_requires_the_contract_fields(tmp_path):
    w = EventWriter(tmp_path / "events.jsonl", "r1")
    with pytest.raises(ValueError, match="lacks"):
        w.emit("step", step=1)
    e = w.emit("warning", message="m", key=None)
    assert e["run"] == "r1" and e["type"] == "warning" and e["t"] > 0
    w.close()
    assert read_all(tmp_path / "events.jsonl") == [json.loads(json.dumps(e))]


def test_reader_returns_only_new_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.poll() == []  # no file yet
    with open(path, "w") as f:
        f.write('{"type": "a"}\n{"type": "b"')
    assert [e["type"] for e in reader.poll()] == ["a"]
    with open(path, "a") as f:
        f.write(', "x": 1}\n')
    assert reader.poll() == [{"type": "b", "x": 1}]
    assert reader.poll() == []
    assert reader.at_end


def test_reader_skips_garbage_and_counts_it(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('not json\n[1, 2]\n{"type": "ok"}\n\n')
    reader = EventReader(path)
    assert reader.poll() == [{"type": "ok"}]
    assert reader.bad_lines == 1


def test_reader_starts_over_on_truncation_and_replacement(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "a"}\n{"type": "b"}\n')
    reader = EventReader(path)
    assert len(reader.poll()) == 2
    path.write_text('{"type": "c"}\n')  # shrank
    assert reader.poll() == [{"type": "c"}]
    tmp = tmp_path / "new"
    tmp.write_text('{"type": "d"}\n{"type": "e"}\n')
    os.replace(tmp, path)  # replaced (new inode, larger)
    assert [e["type"] for e in reader.poll()] == ["d", "e"]


def test_reader_delivers_a_backlog_in_batches(tmp_path):
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        for i in range(5000):
            f.write(json.dumps({"type": "step", "step": i}) + "\n")
    reader = EventReader(path, max_bytes=4096)
    steps = []
    while batch := reader.poll():
        assert len(batch) < 200
        steps += [e["step"] for e in batch]
    assert steps == list(range(5000))


def test_every_event_type_is_documented():
    from pathlib import Path

    design = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    for type_, fields in EVENT_FIELDS.items():
        assert f"`{type_}`" in design
        for f in fields:
            assert f"`{f}`" in design, (type_, f)
