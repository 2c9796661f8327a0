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


@pytest.mark.parametrize(
    ("edit", "bad"),
    [
        ({"find": "beta body", "replace": "beta\x00body"}, r"U\+0000"),
        ({"section": "Beta", "new_text": "ok\x1bgarbage"}, r"U\+001B"),
        ({"find": "beta", "replace": "\ud800"}, "surrogate"),
    ],
)
def test_binary_edit_is_refused_and_changes_nothing(
    store: DocStore, tmp_path: Path, edit: dict[str, str], bad: str
) -> None:
    with pytest.raises(DocError, match=bad) as e:
        store.edit("a.md", **edit)
    assert e.value.code == "binary"
    assert (tmp_path / "a.md").read_text() == DOC and store.versions("a.md") == []
    assert store.read("a.md")["text"].startswith("# Title")  # still readable text


def test_tabs_and_unicode_are_still_text(store: DocStore) -> None:
    store.edit("a.md", find="beta body", replace="beta\tbody — café ✓")
    assert "beta\tbody — café ✓" in store.read("a.md", section="Beta")["text"]


def test_restore_undoes_an_edit_and_can_itself_be_undone(store: DocStore, tmp_path: Path) -> None:
    first = store.edit("a.md", find="beta body", replace="changed")["backup_version"]
    edited = (tmp_path / "a.md").read_text()
    r = store.restore("a.md", first)
    assert (tmp_path / "a.md").read_text() == DOC and r["restored_version"] == first
    assert store.read_version("a.md", r["backup_version"]) == edited  # the replaced text is kept
    assert store.versions("a.md") == [first, r["backup_version"]]
    with pytest.raises(DocError) as e:
        store.restore("a.md", "20990101T000000.000000Z")
    assert e.value.code == "version_not_found"
    with pytest.raises(DocError) as e:
        store.restore("a.md", "../../a.md")
    assert e.value.code == "version_not_found"


def test_restore_rescues_a_document_bricked_by_binary_bytes(store: DocStore, tmp_path: Path) -> None:
    """What an old server's NUL edit left behind: reads say binary; the version brings it back."""
    v = store.edit("a.md", find="beta body", replace="beta body!")["backup_version"]
    (tmp_path / "a.md").write_bytes(b"# Title\x00\x00 broken")
    with pytest.raises(DocError, match="binary"):
        store.read("a.md")
    store.restore("a.md", v)
    assert store.read("a.md")["text"] == DOC.rstrip("\n")


def test_only_the_newest_versions_are_kept(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOC)
    store = DocStore(tmp_path, max_bytes=4096, keep_versions=3)
    made = [
        store.edit("a.md", find="beta body", replace=f"beta body {i}")["backup_version"] for i in range(8)
    ]
    # edit i replaces "beta body" inside "beta body <i-1>", so each version is a distinct text
    assert store.versions("a.md") == made[-3:]
    assert len(list((tmp_path / ".versions" / "a.md").iterdir())) == 3  # disk stays bounded
    assert "beta body 6" in store.read_version("a.md", made[-1])


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_edit_and_restore_keep_the_file_mode(tmp_path: Path, mode: int) -> None:
    doc = tmp_path / "a.md"
    doc.write_text(DOC)
    doc.chmod(mode)
    store = DocStore(tmp_path)
    v = store.edit("a.md", find="beta body", replace="new body")["backup_version"]
    assert doc.stat().st_mode & 0o777 == mode
    backup = tmp_path / ".versions" / "a.md" / f"{v}.bak"
    assert backup.stat().st_mode & 0o777 == mode  # a backup is never more readable than the document
    store.restore("a.md", v)
    assert doc.stat().st_mode & 0o777 == mode
