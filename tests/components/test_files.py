"""Atomic writes and the temporaries a killed writer leaves behind."""

from __future__ import annotations

from pathlib import Path

from components.files import remove_temporaries, write_atomically


def test_a_killed_writers_temporaries_are_removed_and_nothing_else(tmp_path: Path) -> None:
    write_atomically(tmp_path / "report.md", "# whole\n")
    (tmp_path / ".report.md.x1y2.tmp").write_text("# who")  # what a SIGKILL mid-write leaves
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")

    removed = remove_temporaries(tmp_path)

    assert [path.name for path in removed] == [".report.md.x1y2.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.tmp", "report.md"]
    assert (tmp_path / "report.md").read_text() == "# whole\n"
    assert remove_temporaries(tmp_path / "absent") == []
