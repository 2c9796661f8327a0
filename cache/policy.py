"""What may be cached and served: pure, fast rules (no I/O, no model), used by store AND lookup.

Design of context safety (`is_self_contained`)
-----------------------------------------------
An answer is only reusable by another caller if the question that produced it means the same
thing without the earlier turns of the call. A classifier would need training data we do not
have and would add latency on the turn path, so we use conservative rules that reject anything
that *may* lean on earlier turns. Both sides are gated by the same rule: a dependent question is
never stored, and a dependent question is never answered from the cache (bypass). So even if a
follow-up ("and on Sundays?") were close in embedding space to a stored self-contained question
("Are you open on Sundays?"), it would go to the LLM, which sees the real conversation.

A question is NOT self-contained when it
  * starts with a continuation ("and …", "but …", "also …", "what about …", "how about …",
    "same for …", "then …", "so …", "what if …", "why", "which one");
  * contains a demonstrative or anaphoric reference (this/that/these/those, they/them/their,
    "the other", "the same", "that one", "which one", "else", "instead", "either", "as well",
    trailing "too"/"again"), or "it" not followed by an infinitive/clause ("how much does it
    cost?" refers back; "how long does it take to ship?" does not);
  * is a fragment: fewer than two words, or no content word at all ("how much?", "yes please").
The rules are applied whether or not the call has earlier turns: a question that needs context
is just as unsafe to store from the first turn. False negatives (a self-contained question
judged dependent) cost only a cache miss; false positives could give a caller a wrong answer,
so every ambiguous case falls on the safe side.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9']+")

_CONTINUATION_STARTS = (
    "and", "but", "or", "also", "plus", "so", "then", "what about", "how about", "same",
    "what if", "why", "which one", "which ones", "the other", "ok and", "okay and", "what else",
    "anything else", "really", "even", "except", "instead", "otherwise", "besides",
)  # fmt: skip

_ANAPHORA = re.compile(
    r"\b(this|that|these|those|they|them|their|theirs|there's|the other|the same|else|instead|"
    r"either|neither|as well|former|latter|aforementioned|such)\b"
    r"|\b(which|that|this|the|other|another|first|second|last|cheaper|cheapest|bigger|biggest|"
    r"smaller|smallest|new|same|blue|red|black|white) ones?\b"
    r"|\b(too|again)\W*$"
)
# "that" as a relative/complementiser after a content word ("is there a store that sells …")
# would also be caught above; we accept that loss.

_IT = re.compile(r"\b(it|its|it's)\b")
_IT_DUMMY = re.compile(r"\b(it|it's)\b.*\b(to|if|that|whether|for me to)\b")

_FUNCTION_WORDS = frozenset(
    """a an the and or but so to of in on at by for with from about as into than then too
    very i me my mine we us our you your yours he him his she her it its they them their
    this that these those here there what which who whom whose when where why how
    is are was were be been being am do does did done have has had can could will would
    shall should may might must not no yes yeah yep ok okay sure please thanks thank
    much many more most less any some all other another one ones same else also just
    really well oh um uh hmm hi hello hey right alright again what's where's how's it's
    that's there's i'm i'd i'll don't can't won't isn't aren't doesn't didn't""".split()
)


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("’", "'")))


def is_self_contained(text: str, context: list[dict] | None = None) -> bool:
    """True when `text` can be understood without earlier turns (see module docstring)."""
    t = _norm(text)
    words = t.split()
    if len(words) < 2:
        return False
    if not any(w not in _FUNCTION_WORDS for w in words):
        return False
    if any(t == s or t.startswith(s + " ") for s in _CONTINUATION_STARTS):
        return False
    if _ANAPHORA.search(t):
        return False
    return not (_IT.search(t) and not _IT_DUMMY.search(t))


# ---- personal data ------------------------------------------------------------------------
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|\b[\w.+-]+ at [\w-]+ dot (com|net|org|[a-z]{2,3})\b", re.I)
_PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{6,}\d(?!\w)")
_LONG_NUMBER = re.compile(r"\b\d{5,}\b")
_ALNUM_ID = re.compile(r"\b(?=[a-z0-9-]*\d)(?=[a-z0-9-]*[a-z])[a-z0-9-]{5,}\b", re.I)
_REF_NUMBER = re.compile(
    r"\b(order|account|card|reference|ref|ticket|booking|customer|member|membership|policy|invoice|"
    r"tracking|confirmation|case|iban|social security|ssn|passport|licen[cs]e)\s*(number|no|num|#|id|code)?"
    r"\s*(is|was|:|#)?\s*[a-z]{0,3}[-\s]?\d{3,}",
    re.I,
)
_SPELLED_DIGITS = re.compile(
    r"\b((zero|oh|one|two|three|four|five|six|seven|eight|nine)[\s,-]+){4,}"
    r"(zero|oh|one|two|three|four|five|six|seven|eight|nine)\b",
    re.I,
)
_NAME = re.compile(
    r"\b(my name is|my name's|name's|call me|my (first|last|full|sur) ?name|this is \w+ speaking|"
    r"i am called|i'm called|it's \w+ speaking|my (date of birth|birthday|address) is|i live at|"
    r"i was born on)\b",
    re.I,
)
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")


def contains_pii(text: str) -> bool:
    """Phone numbers, e-mails, account/order/card numbers, names or addresses the caller gave."""
    t = text.replace("’", "'")
    return bool(
        _EMAIL.search(t)
        or _PHONE.search(t)
        or _CARD.search(t)
        or _LONG_NUMBER.search(t)
        or _REF_NUMBER.search(t)
        or _SPELLED_DIGITS.search(t)
        or _NAME.search(t)
        or _alnum_id(t)
    )


def _alnum_id(t: str) -> bool:
    # "AB12345", "X9-44120": mixed letters+digits with >= 3 digits (not "24h", "4pm", "mp3").
    return any(sum(c.isdigit() for c in m.group(0)) >= 3 for m in _ALNUM_ID.finditer(t))


# ---- answers that must not be reused ------------------------------------------------------
_REFUSAL = re.compile(
    r"\b(sorry|apolog\w*|i can't|i cannot|i can not|i'm unable|i am unable|i'm not able|i am not able|"
    r"i don't know|i do not know|i'm not sure|i am not sure|i won't|i will not|as an ai|"
    r"i don't have (that|this|any|access|information|the)|not able to help|can't help|cannot help|"
    r"didn't (quite )?catch|could you (please )?repeat|could you say that again|pardon\??$|"
    r"i didn't understand|i did not understand|something went wrong|try again later|"
    r"unable to (process|access|find|help))\b",
    re.I,
)


def is_refusal_or_apology(answer: str) -> bool:
    """Refusals, apologies, 'I don't know', clarification requests and error notices."""
    return bool(_REFUSAL.search(answer.replace("’", "'")))


# ---- prompt injection --------------------------------------------------------------------
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|prompts?|guidelines|"
    r"everything|above|previous|prior|system)\b"
    r"|\bfrom now on\b|\btell (everyone|everybody|all|every|other|the next)\b"
    r"|\b(reveal|show|print|repeat|tell me|what is|what's|give me|read)\b.{0,30}\b(system prompt|your prompt|"
    r"prompt|instructions|your rules|hidden|configuration)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bact as\b|\bpretend (to be|you are|you're)\b|\bjailbreak\b"
    r"|\bdeveloper mode\b|\brepeat after me\b|\bsay exactly\b|\bnew (rule|instruction)s?\b"
    r"|\b(always|only) (say|answer|reply|respond)\b|\bfor all (future )?callers\b",
    re.I,
)


def is_injection(text: str) -> bool:
    """Attempts to change the agent's behaviour for others or extract its instructions."""
    return bool(_INJECTION.search(text.replace("’", "'")))


MAX_ANSWER_CHARS = 800


def is_cacheable(
    question: str,
    answer: str,
    context: list[dict] | None = None,
    used_tool: bool = False,
    call_error: bool = False,
) -> tuple[bool, str]:
    """(ok, reason). reason is "ok" or the first rule that refused the pair."""
    if used_tool:
        return False, "used_tool"
    if call_error:
        return False, "call_error"
    if not question.strip() or not answer.strip():
        return False, "empty"
    if len(answer) > MAX_ANSWER_CHARS:
        return False, "answer_too_long"
    if is_injection(question) or is_injection(answer):
        return False, "injection"
    if contains_pii(question):
        return False, "pii_question"
    if contains_pii(answer):
        return False, "pii_answer"
    if not is_self_contained(question, context):
        return False, "not_self_contained"
    if is_refusal_or_apology(answer):
        return False, "refusal_or_apology"
    return True, "ok"


def lookup_allowed(question: str, context: list[dict] | None = None) -> tuple[bool, str]:
    """May this question be answered from the cache at all? (reason as in is_cacheable)."""
    if not question.strip():
        return False, "empty"
    if is_injection(question):
        return False, "injection"
    if contains_pii(question):
        return False, "pii_question"
    if not is_self_contained(question, context):
        return False, "not_self_contained"
    return True, "ok"
