"""DocStore on a real temp directory: sections, edits, versions, path rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.docs_store import DocError, DocStore

DOC = (
    "# Title\n\nIntro line.\n\n## Alpha\n\nalpha body\n\n### Alpha detail\n\ndetail\n\n## Beta\n\nbeta body\n"
)


@pytest.fixture()
def store(tmp_path: Path) -> DocStore:
    (tmp_path / "a.md").write_text(DOC)
    return DocStore(tmp_path, max_bytes=4096)


def test_section_includes_subsections_and_stops_at_sibling(store: DocStore) -> None:
    r = store.read("a.md", section="alpha")
    assert r["text"].startswith("## Alpha") and "### Alpha detail" in r["text"] and "Beta" not in r["text"]
    assert (r["start_line"], r["end_line"]) == (5, 12)


def test_ambiguous_section_is_refused(store: DocStore) -> None:
    with pytest.raises(DocError, match="ambiguous"):
        store.read("a.md", section="a")  # matches Alpha, Alpha detail and Beta


def test_middle_section_edit_keeps_neighbours(store: DocStore, tmp_path: Path) -> None:
    r = store.edit("a.md", section="Alpha", new_text="new alpha\nsecond line\n")
    text = (tmp_path / "a.md").read_text()
    assert "## Alpha\nnew alpha\nsecond line\n\n## Beta\n\nbeta body\n" in text
    assert "Alpha detail" not in text and text.endswith("\n")
    assert store.read_version("a.md", r["backup_version"]) == DOC
    assert store.versions("a.md") == [r["backup_version"]]


def test_edit_that_would_exceed_the_limit_changes_nothing(store: DocStore, tmp_path: Path) -> None:
    with pytest.raises(DocError, match="too_large"):
        store.edit("a.md", find="beta body", replace="x" * 5000)
    assert (tmp_path / "a.md").read_text() == DOC and store.versions("a.md") == []


def test_symlinked_directory_escape_and_hidden_names(tmp_path: Path) -> None:
    inside, outside = tmp_path / "docs", tmp_path / "outside"
    inside.mkdir(), outside.mkdir()
    (outside / "x.md").write_text("# secret\n")
    os.symlink(outside, inside / "link")
    (inside / ".hidden.md").write_text("# hidden\n")
    store = DocStore(inside)
    assert store.list() == []
    for name in ("link/x.md", ".hidden.md", "sub/../../outside/x.md", "a\x00.md", ""):
        with pytest.raises(DocError) as e:
            store.read(name)
        assert e.value.code in ("outside_docs", "invalid_name")


def test_non_utf8_text_is_refused_as_binary(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DocError) as e:
        DocStore(tmp_path).read("latin.txt")
    assert e.value.code == "binary"
