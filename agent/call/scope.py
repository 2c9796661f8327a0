"""Is the caller's question one the tenant's own knowledge answers? (issue 22 item 6)

A small local LLM asked something its facts do not cover invents ("Acme Hardware offers paint
brushes"). This step decides *before* the LLM, offline, on the sentence embedder the cache has
already loaded, whether the tenant's facts and FAQ cover the question; if not, the agent says
`REFUSAL` ("I don't have that information. Would you like me to connect you with a person?")
instead of letting any LLM answer, on every profile.

How it decides (`ScopeStep.decide`; one embedding of the question, ~5-10 ms, plus a matrix
product over a few hundred anchors):

1. Social turns (greetings, thanks, "okay", "is this Acme?") and turns where the caller *gives*
   details ("my policy number is ...", "it happened on Tuesday") are never refused: a rule, no
   embedding. They are not questions about the business.
2. Positive anchors: the tenant's FAQ questions and paraphrases, its fact sentences and FAQ
   answers, plus the exemplars of each generic caller topic (`TOPICS`) that the tenant's
   knowledge *covers*, judged lexically (a topic's ``covered_by`` pattern found in the facts /
   FAQ: hours are covered when the facts say "open" or "hours", holidays when they name a holiday
   or say "24 hours" / "7 days" / "every day").
3. Negative anchors: the exemplars of the generic topics the knowledge does *not* cover
   (holidays, the status of a claim or order, contact channels, other branches, parking,
   payment methods, products and prices, coverage, jobs, ...). They are what makes "are you
   open on Christmas day?" out of scope for a shop whose facts give weekly hours only, though it
   is close to "when are you open?".
4. In scope when the nearest positive anchor is at least `SURE_SIM` (nearly an FAQ); or every
   content word of the question occurs in the facts / FAQ and the anchor is at least
   `LEX_SIM`; or it beats the nearest negative anchor by `MARGIN` and is at least `MIN_SIM`
   (`KNOWN_SIM` when at least one content word occurs in the facts / FAQ).

Thresholds were tuned on the `tune` split of tests/data/scope/<tenant>.yaml and reported on
both splits by `python -m agent.bench.scope` (numbers in the README).

The answer side, `grounded(answer, tenant)`: an LLM answer whose content words (or numbers)
are not found in the tenant's knowledge is not grounded. The turn streams the LLM's words to
the TTS as they come, so this cannot stop an answer being spoken; it gates what is *stored* in
the cache, so an invented answer is never replayed to other callers.

`accepts_offer(text)` / `declines_offer(text)`: the caller's "yes" / "no" to the refusal's offer
of a person (the intent step turns a "yes" into the transfer). `prewarm(tenant)`: embed the
tenant's anchors at call start. `scope_reply_async`: the step for the turn path, off the event
loop and bounded by `SCOPE_TIMEOUT_S` (a cold embedder fails open: the LLM answers that turn).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cache.policy import consistent_with_facts

if TYPE_CHECKING:
    from cache.embedder import Embedder
    from core.tenants import Tenant

log = logging.getLogger("callcenter.scope")

REFUSAL = "I don't have that information. Would you like me to connect you with a person?"
# Without a transfer number there is nobody to offer: say so plainly.
REFUSAL_NO_TRANSFER = "I don't have that information, sorry. Is there anything else I can help with?"

# Tuned on the tune split (`python -m agent.bench.scope --sweep` shows each one's range that
# keeps the tune split at its best); see the module docstring.
MIN_SIM = 0.49
MARGIN = 0.01
SURE_SIM = 0.90
LEX_SIM = 0.30
KNOWN_SIM = 0.40


@dataclass(frozen=True)
class Topic:
    """A kind of question callers ask many businesses, with how a tenant's knowledge shows it
    covers it. ``covered_by`` None: never covered by facts (asked of the business, answered by
    a person); ``always``: never refused (social turns)."""

    name: str
    exemplars: tuple[str, ...]
    covered_by: str | None = None


# Generic across businesses: no tenant's words here. Exemplars are phrasings of the topic, not
# of any test question.
TOPICS: tuple[Topic, ...] = (
    Topic(
        "hours",
        (
            "when are you open",
            "what time do you close",
            "are you open today",
            "can I call you at night",
            "how late can I come in",
            "is anyone there at the weekend",
            "are you open right now",
        ),
        r"\b(open|opening|hours|closed?|am|pm)\b",
    ),
    Topic(
        "holidays",
        (
            "are you open on christmas day",
            "are you open on public holidays",
            "what are your holiday hours",
            "are you open on new year's day",
            "are you open on easter",
            "are you open on thanksgiving",
        ),
        r"\b(holidays?|christmas|easter|thanksgiving|new year|24 hours|7 days|seven days|every day|all year)\b",
    ),
    Topic(
        "location",
        ("where are you", "what's your address", "how do I find you", "which street are you on"),
        r"\b(address|street|road|avenue|located|location)\b",
    ),
    Topic(
        "other_branches",
        (
            "do you have another branch",
            "is there a store near me",
            "do you have other locations",
            "is there one in another town",
        ),
        r"\b(branch|branches|locations|stores in)\b",
    ),
    Topic(
        "parking_access",
        (
            "is there parking",
            "where can I park my car",
            "is the building wheelchair accessible",
            "do you have toilets for customers",
            "is there a lift",
        ),
        r"\b(parking|park|wheelchair|accessible|toilets?|restrooms?)\b",
    ),
    Topic(
        "delivery",
        ("do you deliver", "how much is shipping", "can you bring it to my house", "do you ship"),
        r"\b(deliver|delivery|deliveries|shipping|ship)\b",
    ),
    Topic(
        "delivery_area",
        ("do you deliver out of state", "do you ship abroad", "how far do you deliver"),
        r"\b(deliver(y)? (area|radius|to)|miles|km|abroad|nationwide|countrywide)\b",
    ),
    Topic(
        "returns",
        ("can I return this", "can I bring it back", "can I get a refund", "what if it's faulty"),
        r"\b(return|returns|refunds?|exchange)\b",
    ),
    Topic(
        "claims",
        (
            "I want to make a claim",
            "I had an accident",
            "someone crashed into my car",
            "my house was broken into",
            "my kitchen flooded",
            "I need to report damage",
        ),
        r"\bclaims?\b",
    ),
    Topic(
        "case_status",
        (
            "what's the status of my order",
            "has my claim been approved",
            "when will I get paid",
            "any news on my case",
            "who is dealing with my case",
            "how long will it take to process",
            "where is my order",
        ),
        r"\b(status|track|tracking|processed|processing|approved?|processing time)\b",
    ),
    Topic(
        "contact",
        (
            "what's your phone number",
            "what's your email",
            "do you have a website",
            "are you on social media",
            "what's your fax number",
            "can you email me",
        ),
        r"\b(phone|email|e-mail|website|www|\.com|fax|facebook|instagram)\b",
    ),
    Topic(
        "people",
        ("who is the manager", "what's the owner's name", "who is handling my account", "are you hiring"),
        r"\b(manager|owner|staff|jobs|careers|hiring)\b",
    ),
    Topic(
        "payment",
        (
            "can I pay by card",
            "do you take cash",
            "can I pay with my phone",
            "do you accept cheques",
            "can I pay monthly",
            "how do I pay my bill",
        ),
        r"\b(pay|payment|payments|card|cards|cash|cheques?|checks?|paypal|direct debit|invoice)\b",
    ),
    Topic(
        "products_prices",
        (
            "do you sell that",
            "do you have it in stock",
            "how much does it cost",
            "which brands do you carry",
            "do you have any discounts",
            "can I order online",
            "do you have gift cards",
            "do you price match",
        ),
        r"\b(sell|sells|stock|products?|catalog(ue)?|prices?|brands?|discounts?|price match|online|gift)\b",
    ),
    Topic(
        "services",
        (
            "do you do repairs",
            "can you install it for me",
            "do you rent equipment",
            "can you cut it to size",
            "do you offer a service",
        ),
        r"\b(repairs?|install|installation|rent|rental|hire|service|services|cutting)\b",
    ),
    Topic(
        "complaints",
        (
            "I want to make a complaint",
            "how do I complain",
            "I'm not happy with your service",
            "I want to give some feedback",
        ),
        r"\b(complain|complaints?|feedback)\b",
    ),
    Topic(
        "deadlines",
        (
            "how long do I have to do it",
            "is there a time limit",
            "what's the deadline",
            "how many days do I have",
        ),
        r"\b(within \d+|deadline|time limit|\d+ days (of|after|from))\b",
    ),
    Topic(
        "account_changes",
        (
            "can I change my address",
            "I want to cancel",
            "can I add someone to my account",
            "when is my renewal",
            "can you send me my documents",
        ),
        r"\b(cancel|cancellation|renewal|renew|change (of )?address|documents|certificate)\b",
    ),
    Topic(
        "coverage_quotes",
        (
            "am I covered for this",
            "does my policy cover it",
            "how much is the excess",
            "can I get a quote",
            "do you insure that",
            "what's the maximum payout",
        ),
        r"\b(cover|covers|covered|coverage|excess|deductible|quotes?|premiums?|payout)\b",
    ),
)

# Social turns and caller-given details: never refused, no embedding needed.
_SOCIAL = re.compile(
    r"^(?:(?:hi|hello|hey|good (?:morning|afternoon|evening)|hiya|yes|yeah|yep|no|nope|ok|okay|"
    r"alright|all right|sure|great|cool|fine|perfect|right|got it|i see|uh huh|uh-huh|mm|hmm|um|uh|"
    r"oh|so|thanks|thank you|thanks so much|thank you so much|thank you very much|cheers|"
    r"that's (?:great|fine|good|helpful|perfect)|(?:that|it) helps|sounds good|much appreciated)"
    r"[ ,.!]*)+$"
)
_IDENTITY = re.compile(
    r"^(?:(?:hi|hello|hey|um|uh|yeah|so) )*(?:is|am i|have i) (?:this|that|i) (?:(?:called|reached|got|speaking to|calling) )?(?:the )?"
)
_GIVES_DETAILS = re.compile(
    r"^(?:(?:um|uh|yeah|so|okay|and|well) )*(?:my (?:name|policy number|policy|order number|account number|number|"
    r"reference|date of birth|postcode|zip code|email) (?:is|was)|it (?:happened|was) (?:on|last|yesterday|this)|"
    r"(?:the )?(?:incident|accident) (?:happened|was) (?:on|last|yesterday|this)|i'm calling about|"
    r"this is (?:\w+ ){1,3}(?:calling|speaking))\b"
)


def normalise(text: str) -> str:
    """Lower case, curly quotes straightened, punctuation (but apostrophes) to spaces."""
    t = text.lower().replace("\u2019", "'").replace("`", "'")
    t = re.sub(r"[^a-z0-9' ]+", " ", t)
    t = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", t)
    return " ".join(t.split())


def knowledge_sentences(tenant: Tenant) -> list[str]:
    """What the tenant says about itself, one item each: FAQ questions and their paraphrases,
    fact sentences, FAQ answers."""
    out: list[str] = []
    for f in tenant.faq:
        out += [f.question, *f.paraphrases]
    out += list(tenant.facts)
    out += [f.answer for f in tenant.faq]
    return [s for s in out if s.strip()]


def knowledge_text(tenant: Tenant) -> str:
    """The tenant's knowledge as one text (the prompt's facts block, FAQ questions and answers)."""
    return " ".join([tenant.facts_block(), *knowledge_sentences(tenant)])


def covered_topics(tenant: Tenant) -> list[str]:
    """Names of the generic topics the tenant's knowledge covers (lexically, see `TOPICS`)."""
    text = knowledge_text(tenant).lower()
    return [t.name for t in TOPICS if t.covered_by is not None and re.search(t.covered_by, text)]


@dataclass(frozen=True)
class Decision:
    """What the scope step decided for one question, and why."""

    in_scope: bool
    why: str  # social | details | identity | knowledge | sure | topic:<name> | far | empty
    pos_sim: float = 0.0
    neg_sim: float = 0.0
    nearest: str = ""  # the nearest positive anchor
    nearest_neg: str = ""  # the nearest negative anchor
    all_known: bool = False  # every content word of the question occurs in the knowledge
    n_known: int = 0  # how many of its content words occur in the knowledge
    ms: float = 0.0


class ScopeIndex:
    """One tenant's anchors, embedded once (per knowledge version)."""

    def __init__(self, tenant: Tenant, embedder: Embedder) -> None:
        covered = set(covered_topics(tenant))
        self.business = normalise(tenant.business_name)
        pos = knowledge_sentences(tenant)
        pos_src = ["knowledge"] * len(pos)
        neg: list[str] = []
        neg_src: list[str] = []
        for topic in TOPICS:
            if topic.name in covered:
                pos += topic.exemplars
                pos_src += [f"topic:{topic.name}"] * len(topic.exemplars)
            else:
                neg += topic.exemplars
                neg_src += [f"topic:{topic.name}"] * len(topic.exemplars)
        self.pos_texts, self.pos_src = pos, pos_src
        self.neg_texts, self.neg_src = neg, neg_src
        self.pos = np.asarray(embedder.embed_many(pos), dtype=np.float32)
        self.neg = (
            np.asarray(embedder.embed_many(neg), dtype=np.float32) if neg else np.zeros((0, 384), np.float32)
        )


_indexes: dict[tuple[str, str], ScopeIndex] = {}
_index_lock = threading.Lock()


def scope_index(tenant: Tenant, embedder: Embedder) -> ScopeIndex:
    """The tenant's anchors, built on first use and kept per (tenant, knowledge version)."""
    key = (tenant.name, tenant.knowledge_version)
    with _index_lock:  # a call's prewarm and its first turn may race here
        idx = _indexes.get(key)
        if idx is None:
            idx = _indexes[key] = ScopeIndex(tenant, embedder)
        return idx


def rule_decision(question: str, tenant: Tenant) -> Decision | None:
    """The turns decided from the words alone (social, identity checks, caller-given details),
    or None when the question needs the embedder."""
    t = normalise(question)
    if not t:
        return Decision(True, "empty")
    if _SOCIAL.fullmatch(t):
        return Decision(True, "social")
    if _GIVES_DETAILS.match(t):
        return Decision(True, "details")
    m = _IDENTITY.match(t)
    if m is not None:
        rest = t[m.end() :]
        name = normalise(tenant.business_name)
        words = set(name.split()) | {"claims", "desk", "store", "shop", "office", "right", "number", "place"}
        if rest and all(w in words for w in rest.split()):
            return Decision(True, "identity")
    return None


# Words a caller's question may use whatever it is about: function words, fillers, the verbs of
# asking. A question whose every other word occurs in the tenant's knowledge is about it.
_QUESTION_GENERIC = set(
    """a an the and or but so if then than to of in on at by for with from about as into up out
i me my mine we us our you your he she it its they them their this that these those there here
what what's when when's where where's which who who's how how's why do does did is are was were be
been am have has had can could will would should may might not no yes yeah ok okay um uh er hmm oh
hi hello hey please thanks thank just also still any anything something someone anyone else really
actually guys exactly kind sort right now get got need needed want like i'd i'm you're it's that's
there's don't can't know tell let help see say ask go make today tomorrow tonight morning afternoon
evening night day days week weekend weekends weekday weekdays monday tuesday wednesday thursday
friday saturday sunday mondays tuesdays wednesdays thursdays fridays saturdays sundays""".split()
)


def known_words(question: str, tenant: Tenant) -> tuple[list[str], list[str]]:
    """(content words of `question` found in the tenant's facts / FAQ, those not found), each up
    to a plural or verb ending. The business's name does not count: "Globex Insurance" names the
    whole trade, not something the facts say about it."""
    kt = normalise(" ".join(knowledge_sentences(tenant))).split()
    known = set(kt) | {_stem(w) for w in kt}
    found: list[str] = []
    missing: list[str] = []
    for w in normalise(question).split():
        if w in _QUESTION_GENERIC or w.isdigit():
            continue
        (found if w in known or _stem(w) in known else missing).append(w)
    return found, missing


@dataclass(frozen=True)
class Thresholds:
    """The step's thresholds (see the module docstring, step 4)."""

    min_sim: float = MIN_SIM
    margin: float = MARGIN
    sure_sim: float = SURE_SIM
    lex_sim: float = LEX_SIM
    known_sim: float = KNOWN_SIM


def judge(pos_sim: float, neg_sim: float, all_known: bool, n_known: int, th: Thresholds) -> tuple[bool, str]:
    """(in scope, which route decided) from a question's features; "" for the caller to name
    the anchor's source. Pure: the benchmark's sweep calls it with other thresholds."""
    if pos_sim >= th.sure_sim:
        return True, "sure"
    if all_known and pos_sim >= th.lex_sim:
        return True, "known_words"
    if pos_sim - neg_sim < th.margin:
        return False, ""  # an uncovered topic is as close as anything the tenant says
    if pos_sim >= th.min_sim or (n_known > 0 and pos_sim >= th.known_sim):
        return True, ""
    return False, "far"


def decide(question: str, tenant: Tenant, embedder: Embedder, th: Thresholds | None = None) -> Decision:
    """In scope or not, with the features that decided it.

    Args:
        question: the caller's words.
        tenant: whose knowledge bounds the answer.
        embedder: the cache's sentence embedder.
        th: thresholds (default: the tuned ones).

    Returns:
        The `Decision`; ``why`` is the route (``sure``, ``known_words``, ``far``, a rule's
        name) or the nearest anchor's source (``knowledge``, ``topic:<name>``).
    """
    t0 = time.perf_counter()
    rule = rule_decision(question, tenant)
    if rule is not None:
        return Decision(rule.in_scope, rule.why, ms=(time.perf_counter() - t0) * 1000)
    idx = scope_index(tenant, embedder)
    # the raw text, as the cache lookup embeds it: after a miss the vector comes from the
    # embedder's LRU and this step costs a matrix product, not a forward pass
    v = np.asarray(embedder.embed(question), dtype=np.float32)
    ps = idx.pos @ v
    i = int(ps.argmax())
    pos_sim, nearest = float(ps[i]), idx.pos_texts[i]
    neg_sim, neg_src, nearest_neg = -1.0, "", ""
    if len(idx.neg):
        ns = idx.neg @ v
        j = int(ns.argmax())
        neg_sim, neg_src, nearest_neg = float(ns[j]), idx.neg_src[j], idx.neg_texts[j]
    found, missing = known_words(question, tenant)
    all_known = bool(found) and not missing
    ok, why = judge(pos_sim, neg_sim, all_known, len(found), th or Thresholds())
    why = why or (idx.pos_src[i] if ok else neg_src)
    ms = (time.perf_counter() - t0) * 1000
    return Decision(ok, why, pos_sim, neg_sim, nearest, nearest_neg, all_known, len(found), ms)


def refusal_for(tenant: Tenant) -> str:
    """What the agent says to a question its knowledge does not cover."""
    return REFUSAL if tenant.transfer_number else REFUSAL_NO_TRANSFER


def scope_reply(question: str, tenant: Tenant, embedder: Embedder | None = None) -> str | None:
    """The scope step on one caller question (after a cache miss, before the LLM).

    Args:
        question: the caller's final transcript for this turn.
        tenant: the tenant whose facts and FAQ bound what the agent may answer.
        embedder: the cache's sentence embedder (default: the process-wide one).

    Returns:
        None when the tenant's knowledge covers the question (let the LLM answer), else the
        words to say instead: `REFUSAL` (or `REFUSAL_NO_TRANSFER` for a tenant without a
        transfer number).
    """
    if embedder is None:
        from cache.embedder import get_embedder

        embedder = get_embedder()
    return None if decide(question, tenant, embedder).in_scope else refusal_for(tenant)


# The turn never waits longer than this for the step (a cold embedder loads for seconds): past
# it the question goes on to the LLM, as a cache lookup past its budget does.
SCOPE_TIMEOUT_S = 0.3


def ready(tenant: Tenant) -> bool:
    """Has this tenant's index been built in this process (the step then costs milliseconds)."""
    with _index_lock:
        return (tenant.name, tenant.knowledge_version) in _indexes


async def scope_reply_async(
    question: str, tenant: Tenant, embedder: Embedder | None = None, timeout_s: float = SCOPE_TIMEOUT_S
) -> str | None:
    """`scope_reply` off the event loop, bounded for the turn path.

    Args:
        question: the caller's final transcript for this turn.
        tenant: the tenant whose facts and FAQ bound what the agent may answer.
        embedder: the cache's sentence embedder (default: the process-wide one).
        timeout_s: how long the turn may wait; past it (a cold start) the question passes on to
            the LLM and the step keeps warming up in its thread for the next turn.

    Returns:
        As `scope_reply`; None as well when the step did not decide in time.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(scope_reply, question, tenant, embedder), timeout_s)
    except TimeoutError:
        log.warning("scope step not ready within %.1f s (cold start): question passed on", timeout_s)
        return None


# ---------------------------------------------------------------------------- answer side

# Words any answer may use without the facts saying them: function words, phone-agent talk,
# time words. Everything else an answer says must be found (up to a plural/verb ending) in the
# tenant's knowledge text.
_ANSWER_GENERIC = set(
    """a an the and or but so if then than to of in on at by for with from about as into over under up
down out off i me my we us our ours you your yours he she it its they them their this that these those
there here what when where which who how do does did done is are was were be been being am have has had
can could will would shall should may might must not no yes yeah sure of course please thanks thank
welcome happy glad help hello hi great okay ok just also only all any anything something everything
else more less most very really still even both each every other get got need needs want like know
let see find come go make take bring call tell ask give keep stop visit reach contact speak talk
person someone somebody anyone team today tomorrow tonight day days week weeks weekend weekends weekday
weekdays morning afternoon evening night time times hour hours from until till through between
monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays fridays
saturdays sundays we're you're it's that's there's we'll you'll i'll i'm i've we've you've don't
doesn't can't won't isn't aren't unfortunately sorry however currently available information details
answer question questions connect transfer line phone call right now yes no goodbye bye nice
lovely wonderful care""".split()
)
# Numbers, in words or digits, are checked by `consistent_with_facts` ("eight" is "8am"), not here.
_NUMBER_WORDS = set(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
thousand noon midday midnight half quarter o'clock am pm first second third""".split()
)
_STEM_SUFFIXES = ("ings", "ing", "ies", "es", "s", "ed", "ly")


def _stem(word: str) -> str:
    for suf in _STEM_SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[: -len(suf)] + ("y" if suf == "ies" else "")
    return word


def _content_words(text: str) -> list[str]:
    return [
        w
        for w in normalise(text).split()
        if not any(c.isdigit() for c in w) and w not in _ANSWER_GENERIC and w not in _NUMBER_WORDS
    ]


def ungrounded_words(answer: str, tenant: Tenant) -> list[str]:
    """The content words of `answer` that the tenant's knowledge never uses."""
    known = {_stem(w) for w in normalise(knowledge_text(tenant)).split()}
    known |= set(normalise(knowledge_text(tenant)).split())
    return [w for w in _content_words(answer) if w not in known and _stem(w) not in known]


def grounded(answer: str, tenant: Tenant) -> bool:
    """May `answer` be kept for other callers: does the tenant's knowledge support every
    content word and number it states?

    Args:
        answer: what the LLM said.
        tenant: the tenant whose facts and FAQ the answer must come from.

    Returns:
        True when every content word (up to a plural or verb ending) occurs in the tenant's
        facts / FAQ and every number is one the facts give (`consistent_with_facts`).
    """
    if not answer.strip():
        return False
    if not consistent_with_facts(answer, knowledge_text(tenant)):
        return False
    return not ungrounded_words(answer, tenant)


# ---------------------------------------------------------------------------- the offer

_YES = re.compile(
    r"^(?:(?:oh|um|uh|well|okay|ok) )*(?:yes|yeah|yep|yup|sure|please|yes please|yeah please|sure please|"
    r"okay|ok|alright|all right|go ahead|please do|that would be great|that'd be great|i would|i'd like that|"
    r"yes i would|yeah i would|sounds good|why not)(?: (?:please|thanks|thank you|that'd be great))*$"
)


_NO = re.compile(
    r"^(?:(?:oh|um|uh|well|okay|ok) )*(?:no|nope|nah|no thanks|no thank you|not now|not really|"
    r"no that's (?:fine|okay|ok|alright)|that's (?:fine|okay|ok|alright)|i'm (?:fine|good|okay|ok))"
    r"(?: (?:thanks|thank you|no|it's fine))*$"
)


_ASKS = {
    "what", "when", "where", "who", "whom", "whose", "why", "how", "which", "do", "does", "did", "can",
    "could", "would", "will", "is", "are", "was", "were", "should", "may", "have", "has", "any",
}  # fmt: skip


def is_question(text: str) -> bool:
    """A question the facts could answer ("?" or a question word first), not a statement such as
    "The drill I bought is broken." (the caller telling their case is never refused)."""
    t = normalise(text)
    return text.strip().endswith("?") or (t.split(" ", 1)[0] in _ASKS if t else False)


def accepts_offer(text: str) -> bool:
    """Did the caller say yes to "Would you like me to connect you with a person?"."""
    return bool(_YES.fullmatch(normalise(text)))


def declines_offer(text: str) -> bool:
    """Did the caller say no to the offer (and nothing else)."""
    return bool(_NO.fullmatch(normalise(text)))


def prewarm(tenant: Tenant, embedder: Embedder | None = None) -> None:
    """Embed the tenant's anchors now (call start), not on the call's first question (~0.1-0.3 s)."""
    if embedder is None:
        from cache.embedder import get_embedder

        embedder = get_embedder()
    scope_index(tenant, embedder)
