"""The documents directory: safe path resolution, reading, searching and versioned edits.

Pure filesystem logic with no MCP or Celery in it, so it is testable on its own and the MCP server
(`tasks/docs_server.py`) stays a thin adapter. Every public method raises `DocError` with a short
machine-readable `code` and a message a caller can act on.
"""

from __future__ import annotations

import builtins  # DocStore has a method named `list`
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_KEEP_VERSIONS = 20
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
VERSIONS_DIR = ".versions"
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# Text an edit may insert: no NUL or other C0 control characters (tab, newlines and form feed
# are text), no DEL. One such byte makes every later read say "binary".
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_VERSION_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z")


class DocError(Exception):
    """An anticipated document failure; `code` is one of the names listed in the tool docs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Section:
    title: str
    level: int
    start: int  # 0-based index of the heading line
    end: int  # exclusive


def sections(lines: list[str]) -> list[Section]:
    """Markdown sections: a heading runs until the next heading of the same or a higher level."""
    heads = [(i, len(m.group(1)), m.group(2)) for i, ln in enumerate(lines) if (m := _HEADING.match(ln))]
    out: list[Section] = []
    for k, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[k + 1 :] if lv <= level), len(lines))
        out.append(Section(title=title, level=level, start=i, end=end))
    return out


def section_at(secs: list[Section], line: int) -> str | None:
    """Title of the innermost section containing 0-based `line`."""
    inner = [s for s in secs if s.start <= line < s.end]
    return max(inner, key=lambda s: s.level).title if inner else None


def check_text(what: str, text: str) -> None:
    """Refuse text that would turn a document into a binary file (or cannot be stored as UTF-8)."""
    if m := _BINARY_CHARS.search(text):
        raise DocError(
            "binary",
            f"{what} contains the control character U+{ord(m.group()):04X}; only plain text is stored",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DocError("binary", f"{what} is not valid Unicode text (a lone surrogate)") from None


class DocStore:
    def __init__(
        self, root: Path | str, max_bytes: int = DEFAULT_MAX_BYTES, keep_versions: int = DEFAULT_KEEP_VERSIONS
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DocError("not_found", f"documents directory {self.root} does not exist")
        self.max_bytes = max_bytes
        self.keep_versions = max(1, keep_versions)

    # -- path safety -------------------------------------------------------------------------
    def resolve(self, name: str) -> Path:
        """Map a document name to a file strictly inside the root; refuses every way out."""
        if not name or "\x00" in name:
            raise DocError("invalid_name", "document name is empty or contains a NUL byte")
        rel = Path(name)
        if rel.is_absolute() or any(p in ("..", "") or p.startswith(".") for p in rel.parts):
            raise DocError("outside_docs", f"{name!r} is not a plain name inside the documents directory")
        path = (self.root / rel).resolve()  # follows symlinks: a link pointing out is caught here
        if not path.is_relative_to(self.root):
            raise DocError("outside_docs", f"{name!r} resolves outside the documents directory")
        if not path.is_file():
            raise DocError("not_found", f"no document named {name!r}; call list_documents to see the names")
        if path.suffix.lower() not in TEXT_SUFFIXES:
            raise DocError("unsupported_type", f"{name!r}: only {', '.join(TEXT_SUFFIXES)} files are served")
        return path

    def read_text(self, name: str) -> str:
        path = self.resolve(name)
        size = path.stat().st_size
        if size > self.max_bytes:
            raise DocError("too_large", f"{name!r} is {size} bytes; the limit is {self.max_bytes}")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise DocError("binary", f"{name!r} is a binary file, not text")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise DocError("binary", f"{name!r} is not UTF-8 text") from None

    # -- reading -----------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            if p.suffix.lower() not in TEXT_SUFFIXES or not p.resolve().is_relative_to(self.root):
                continue
            st = p.stat()
            title = None
            if st.st_size <= self.max_bytes:
                with open(p, encoding="utf-8", errors="replace") as f:
                    title = next((m.group(2) for ln in f if (m := _HEADING.match(ln.rstrip("\n")))), None)
            out.append(
                {
                    "name": rel.as_posix(),
                    "title": title,
                    "bytes": st.st_size,
                    "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
                    "too_large": st.st_size > self.max_bytes,
                }
            )
        return out

    def read(
        self,
        name: str,
        section: str | None = None,
        start_line: int | None = None,
        end_line: int | None = None,
        max_chars: int = 20_000,
    ) -> dict[str, Any]:
        lines = self.read_text(name).splitlines()
        lo, hi = 0, len(lines)
        if section is not None:
            sec = self._find_section(name, lines, section)
            lo, hi = sec.start, sec.end
        if start_line is not None or end_line is not None:
            s = start_line if start_line is not None else lo + 1
            e = end_line if end_line is not None else hi
            if s < 1 or e < s or s > len(lines):
                raise DocError("bad_range", f"lines {s}-{e} are not within 1-{len(lines)} of {name!r}")
            lo, hi = max(lo, s - 1), min(hi, e)
        text = "\n".join(lines[lo:hi])
        truncated = len(text) > max_chars
        return {
            "name": name,
            "section": section,
            "start_line": lo + 1,
            "end_line": hi,
            "total_lines": len(lines),
            "text": text[:max_chars],
            "truncated": truncated,
        }

    def _find_section(self, name: str, lines: builtins.list[str], title: str) -> Section:
        secs = sections(lines)
        want = title.strip().lstrip("#").strip().lower()
        exact = [s for s in secs if s.title.lower() == want]
        partial = [s for s in secs if want and want in s.title.lower()]
        if exact or len(partial) == 1:
            return (exact or partial)[0]
        titles = ", ".join(s.title for s in secs) or "none"
        why = "is ambiguous" if partial else "not found"
        raise DocError("section_not_found", f"section {title!r} {why} in {name!r}; sections: {titles}")

    def search(self, query: str, limit: int = 5) -> builtins.list[dict[str, Any]]:
        """Full-text search: lines scored by how many query terms they contain (all terms first)."""
        terms = [t for t in re.findall(r"\w+", query.lower()) if len(t) > 1]
        if not terms:
            raise DocError("bad_query", "the query has no searchable words")
        limit = max(1, min(limit, 50))
        hits: list[tuple[float, dict[str, Any]]] = []
        for doc in self.list():
            if doc["too_large"]:
                continue
            try:
                lines = self.read_text(doc["name"]).splitlines()
            except DocError:
                continue  # binary or unreadable: never searchable
            secs = sections(lines)
            for i, line in enumerate(lines):
                low = line.lower()
                found = [t for t in terms if t in low]
                if not found:
                    continue
                score = len(set(found)) / len(terms) + (0.5 if query.lower() in low else 0.0)
                hits.append(
                    (
                        score,
                        {
                            "name": doc["name"],
                            "line": i + 1,
                            "section": section_at(secs, i),
                            "snippet": _snippet(line, found[0]),
                            "score": round(score, 3),
                        },
                    )
                )
        hits.sort(key=lambda h: (-h[0], h[1]["name"], h[1]["line"]))
        return [h for _, h in hits[:limit]]

    # -- editing -----------------------------------------------------------------------------
    def edit(
        self,
        name: str,
        section: str | None = None,
        new_text: str | None = None,
        find: str | None = None,
        replace: str | None = None,
    ) -> dict[str, Any]:
        """Replace a section's body (heading kept) or apply a find/replace; backup first, then atomic swap."""
        if (section is None) == (find is None):
            raise DocError("bad_edit", "give either section+new_text or find+replace")
        with self._lock():
            old = self.read_text(name)
            if section is not None:
                if new_text is None:
                    raise DocError("bad_edit", "section edits need new_text")
                check_text("new_text", new_text)
                lines = old.splitlines()
                sec = self._find_section(name, lines, section)
                body = new_text.rstrip("\n").splitlines()
                lines[sec.start + 1 : sec.end] = body + ([""] if sec.end < len(lines) else [])
                new, count = "\n".join(lines) + ("\n" if old.endswith("\n") else ""), 1
            else:
                if not find or replace is None:
                    raise DocError("bad_edit", "find must be non-empty and replace must be given")
                check_text("replace", replace)
                count = old.count(find)
                if count == 0:
                    raise DocError("no_match", f"{find!r} does not occur in {name!r}")
                new = old.replace(find, replace)
            if len(new.encode()) > self.max_bytes:
                raise DocError("too_large", f"the edit would grow {name!r} past {self.max_bytes} bytes")
            path = self.resolve(name)
            version = self._backup(name, old.encode("utf-8"), path)
            _atomic_write(path, new.encode("utf-8"))
        return {"name": name, "replacements": count, "backup_version": version, "bytes": len(new.encode())}

    def restore(self, name: str, version: str) -> dict[str, Any]:
        """Make a saved version the current text again; the current text is kept as a new version.

        Works on a document whose current content is unreadable (binary, too large), so a bad
        edit is always undoable.
        """
        with self._lock():
            text = self.read_version(name, version)
            path = self.resolve(name)
            current = path.read_bytes()
            if current == text.encode("utf-8"):
                return {
                    "name": name,
                    "restored_version": version,
                    "backup_version": None,
                    "bytes": len(current),
                }
            backup = self._backup(name, current, path, keep=version)
            _atomic_write(path, text.encode("utf-8"))
        return {
            "name": name,
            "restored_version": version,
            "backup_version": backup,
            "bytes": len(text.encode()),
        }

    def versions(self, name: str) -> builtins.list[str]:
        self.resolve(name)
        d = self.root / VERSIONS_DIR / name
        return sorted(p.name.removesuffix(".bak") for p in d.glob("*.bak")) if d.is_dir() else []

    def read_version(self, name: str, version: str) -> str:
        if not _VERSION_ID.fullmatch(version):
            raise DocError("version_not_found", f"{version!r} is not a version id; see list_versions")
        self.resolve(name)  # same path rules as the live document
        p = self.root / VERSIONS_DIR / name / f"{version}.bak"
        if not p.is_file() or p.is_symlink():
            raise DocError("version_not_found", f"{name!r} has no version {version!r}; see list_versions")
        data = p.read_bytes()
        if len(data) > self.max_bytes:
            raise DocError(
                "too_large", f"version {version!r} is {len(data)} bytes; the limit is {self.max_bytes}"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DocError("binary", f"version {version!r} of {name!r} is not UTF-8 text") from None
        if "\x00" in text:
            raise DocError("binary", f"version {version!r} of {name!r} is a binary file, not text")
        return text

    def _backup(self, name: str, data: bytes, doc: Path, keep: str | None = None) -> str:
        """Save `data` as a new version (same file mode as the document), then drop the oldest
        beyond `keep_versions` (never `keep`, the version being restored)."""
        d = self.root / VERSIONS_DIR / name
        d.mkdir(parents=True, exist_ok=True)
        version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        while (d / f"{version}.bak").exists():  # two edits within one microsecond
            version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        _atomic_write(d / f"{version}.bak", data, mode_of=doc)
        saved = sorted(p for p in d.glob("*.bak") if _VERSION_ID.fullmatch(p.name.removesuffix(".bak")))
        excess = len(saved) - self.keep_versions
        for old in saved:
            if excess <= 0:
                break
            if old.name.removesuffix(".bak") in (version, keep):
                continue
            old.unlink(missing_ok=True)
            excess -= 1
        return version

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One writer at a time across processes (two MCP servers may share a directory)."""
        (self.root / VERSIONS_DIR).mkdir(exist_ok=True)
        with open(self.root / VERSIONS_DIR / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes, mode_of: Path | None = None) -> None:
    """Write to a temp file in the same directory, fsync, then os.replace: readers never see half a
    file. The result keeps the permission bits of `mode_of` (default: the file being replaced);
    mkstemp alone would turn a 0644 document into 0600."""
    ref = mode_of or path
    try:
        mode = ref.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _snippet(line: str, term: str, width: int = 160) -> str:
    line = line.strip()
    if len(line) <= width:
        return line
    at = max(0, line.lower().find(term) - width // 3)
    return ("…" if at else "") + line[at : at + width] + ("…" if at + width < len(line) else "")
