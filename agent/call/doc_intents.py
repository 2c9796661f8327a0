"""Deterministic intent router for document requests (the local 0.5B model cannot call tools).

Only clear phrasings match; anything else returns None and goes to the LLM as usual, so a
false positive (a document action the caller did not ask for) is rarer than a miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["search", "read", "edit", "analyze", "compare", "status", "cancel"]
_STOP = {"the", "and", "for", "with", "our", "your", "list", "document", "doc", "file", "md", "txt"}
_NUM_WORDS = {"one": "1", "two": "2", "three": "3", "first": "1", "second": "2"}


@dataclass
class Intent:
    kind: Kind
    docs: list[str] = field(default_factory=list)  # resolved document names, best first
    query: str = ""  # search text or section name
    find: str = ""
    replace: str = ""


@dataclass
class DocRef:
    name: str
    title: str = ""


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _tokens(text: str) -> set[str]:
    t = text.lower()
    t = re.sub(r"\bversion\s+(\w+)", lambda m: "v" + _NUM_WORDS.get(m.group(1), m.group(1)), t)
    words = re.findall(r"[a-z][a-z0-9]*", t)
    return {_stem(w) for w in words if (len(w) >= 3 or re.fullmatch(r"v\d", w)) and w not in _STOP}


def resolve_docs(text: str, docs: list[DocRef]) -> list[str]:
    """Documents the text names, best first; name words count double (they are distinctive)."""
    said = _tokens(text)
    scored: list[tuple[int, str]] = []
    for d in docs:
        stem = d.name.rsplit(".", 1)[0]
        name_hits = len(_tokens(stem.replace("-", " ").replace("_", " ")) & said)
        title_hits = len(_tokens(d.title) & said)
        # "prices-v1" also answers to "v1" alone
        if score := 2 * name_hits + title_hits:
            scored.append((score, d.name))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [n for _, n in scored]


_CANCEL = re.compile(r"\b(cancel|stop|abort|forget)\b.*\b(analy[sz]\w*|comparison|compare|job|that|it)\b")
_STATUS = re.compile(
    r"how('s| is| are) (it|that|things|the \w+) (going|coming)|is (it|that|the \w+) (done|ready|finished)"
    r"|any (news|progress|update)|how much longer|how long (will|does) (it|that)|\b(status|progress)\b"
)
_EDIT = re.compile(
    r"\b(?:change|replace|update|correct)\s+(?P<find>.+?)\s+(?:to|with|by)\s+(?P<replace>.+?)"
    r"(?:\s+in\s+(?:the\s+)?(?P<doc>[\w .-]+?))?[.?!]*$",
    re.I,
)
_COMPARE = re.compile(r"\b(compare|comparison|differences?|what changed|what's changed|changes between)\b")
_ANALYZE = re.compile(r"\b(analy[sz]e|analysis|summar(y|ise|ize)|key facts|action items)\b")
_READ_ABOUT = re.compile(r"what does (?:the )?(?P<doc>[\w .-]+?) say about (?P<sec>[\w .-]+?)[.?!]*$")
_READ = re.compile(r"\bread\b(?: me)?(?: the)?(?: (?P<sec>[\w .-]+?) section)?(?: of| in| from)?(?: the)? ?")
_SEARCH = re.compile(
    r"\b(?:search|look)\b(?: through| in)?(?: the)?(?: documents?| docs| files)?(?: up)? for (?P<q>.+?)[.?!]*$"
    r"|\bfind (?P<q2>.+?) in the (?:documents|docs|files)[.?!]*$"
    r"|\bwhich documents? (?:mentions?|says?|talks? about|covers?) (?P<q3>.+?)[.?!]*$"
    r"|\blook up (?P<q4>.+?)[.?!]*$"
)


def _clean(s: str) -> str:
    return s.strip().strip("\"'“”‘’").strip()


def parse(text: str, docs: list[DocRef]) -> Intent | None:
    t = " ".join(text.lower().split())
    if _CANCEL.search(t):
        return Intent("cancel")
    if _STATUS.search(t):
        return Intent("status")
    if m := _EDIT.search(" ".join(text.split())):
        where = m.group("doc") or ""
        found = resolve_docs(where, docs) if where else resolve_docs(text, docs)
        if found:
            return Intent(
                "edit", docs=found[:1], find=_clean(m.group("find")), replace=_clean(m.group("replace"))
            )
    if _COMPARE.search(t):
        return Intent("compare", docs=resolve_docs(t, docs))
    if _ANALYZE.search(t):
        return Intent("analyze", docs=resolve_docs(t, docs))
    if m := _READ_ABOUT.search(t):
        found = resolve_docs(m.group("doc"), docs)
        if found:
            return Intent("read", docs=found[:1], query=_clean(m.group("sec")))
    if (m := _READ.search(t)) and (found := resolve_docs(t[m.end() :] or t, docs)):
        return Intent("read", docs=found[:1], query=_clean(m.group("sec") or ""))
    if m := _SEARCH.search(t):
        q = m.group("q") or m.group("q2") or m.group("q3") or m.group("q4") or ""
        # keep the caller's casing for the query (the server search is case-insensitive anyway)
        return Intent("search", query=_clean(q))
    return None
