"""Does a caller's utterance stand on its own? (`is_self_contained`: pure rules, ~20 us, no model.)

An answer is only reusable by another caller if the question that produced it means the same
without the earlier turns of the call. Store AND lookup use this rule (cache/policy.py), so a
dependent question is never stored and never answered from the cache. False negatives (a
standalone question judged dependent) cost one cache miss; false positives could give a caller a
wrong answer, so an ambiguous case falls on the dependent side.

Measured on an authored set (tests/data/self_contained.yaml, 256 utterances over 8 business
domains, tuned on 4 and tested on the other 4): `python -m cache.policy_eval`. What decides:

  * fillers first ("um", "ok", "hi there", "yes") are dropped: "ok what about weekends" is
    "what about weekends";
  * continuations at the start ("and ...", "what about ...", "same for ...", "why not",
    "how come", "like what", "which is ...") and at the end ("... too", "... then", "... again");
  * a fragment: under two words, nothing but function/acknowledgement words ("sounds good"), a
    short phrase led by a preposition ("on Sundays?", "per month?"), a short verbless phrase
    with a time, number, choice or ordinal in it ("saturday morning?", "monthly or yearly",
    "the second option"), one whose only content words need an argument ("what's the price?",
    "what's the difference?", "how many should I take?"), a comparative with no "than"
    ("anything cheaper?");
  * a reference to something said before: "the other", "the same", "else", "instead" (not "instead of"), "one(s)"
    as a pronoun ("the bigger one", not "one of your staff"); "this/that/these/those" used as a
    pronoun ("does that include tax", "do you have those in stock", "that day") but NOT as a
    determiner before a noun ("those big padlocks", "that new cordless drill", "this weekend")
    nor "that" as a conjunction/relative ("I heard that you ...", "a store that sells ...");
    "there" as a place ("how do I get there") but not existential ("there's water ...", "is there
    parking"); "it" / "they" / "he" / "she" without an antecedent earlier in the utterance
    ("how much is it?", "does he need to fast" vs "my card got stuck, how do I get it back?",
    "my son has a fever, does he ..."), except the dummy "it" ("is it possible to ...", "how long
    does it take to ...").
A leading "why" is allowed ("Why is my bill so high?"): "why?", "why not?", "why is that?",
"why is it so expensive?" are still dependent through the rules above.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9']+")

FUNCTION_WORDS = frozenset(
    """a an the and or but so to of in on at by for with from about as into than then too
    very i me my mine we us our you your yours he him his she her it its they them their
    this that these those here there what which who whom whose when where why how
    is are was were be been being am do does did done have has had can could will would
    shall should may might must not no yes yeah yep ok okay sure please thanks thank
    much many more most less any some all other another one ones same else also just
    really well oh um uh hmm hi hello hey right alright again what's where's how's it's
    that's there's i'm i'd i'll don't can't won't isn't aren't doesn't didn't""".split()
)
# Acknowledgements: no question in them ("sounds good", "great thanks", "perfect").
_ACK = frozenset(
    """good great fine perfect cool awesome lovely brilliant sounds sound works excellent nice
    wonderful definitely absolutely exactly correct cheers bye goodbye gotcha understood""".split()
)
_FILLERS = frozenset(
    "um uh er erm hmm oh ok okay alright right well yeah yes yep hi hello hey great cool perfect thanks".split()
)
_CONTINUATION_STARTS = (
    "and", "but", "or", "also", "plus", "so", "then", "what about", "how about", "same", "what if",
    "which one", "which ones", "which is", "which are", "which would", "the other", "what else",
    "anything else", "really", "even", "except", "instead", "otherwise", "besides", "why not",
    "why so", "how come", "how so", "like what", "such as", "for example", "what do you mean",
    "say again", "come again", "are you sure", "is that right", "anything cheaper", "something cheaper",
)  # fmt: skip
_BE = frozenset(
    "is are was were will would might may could should has have had isn't aren't wasn't won't be used".split()
)
_TRAILING = ("too", "again", "then", "instead", "as well", "also", "though", "either")
_ANAPHORA = re.compile(
    r"\b(the other|the same|else|instead(?! of)|either|neither|as well|former|latter|aforementioned|such)\b"
)
_PREPS = frozenset(
    "on in at by for with from about to per during after before until till over under without via".split()
)
_SUBJECTS = frozenset("i you we he she it they there the a an my your our his her their some any no".split())
# Not a noun after a demonstrative: "that" + one of these is a pronoun ("can I do that online").
_NOT_NOUN = frozenset(
    """online now today tonight tomorrow here there later again instead please quickly over out
    back up down off away anyway still yet first last next""".split()
)
_VERBS = frozenset(
    """include includes cover covers come comes cost costs take takes work works mean means sound
    sounds look looks seem seems happen happens apply applies count counts matter matters need needs
    help helps go goes make makes get gets last lasts hurt hurts fit fits run runs leave leaves start
    starts end ends open opens close closes sell sells ship ships arrive arrives serve serves require
    requires contain contains do does be is was""".split()
)
# Adjectives and predicates skipped on the way to the noun ("that new cordless drill"); a
# demonstrative followed only by these is a pronoun ("is that free", "is that normal").
_ADJ = frozenset(
    """new old big small little large huge tiny cheap cheaper expensive good nice free normal safe
    right correct ok okay true available possible extra spicy vegetarian vegan enough necessary
    refundable covered included late early full whole real long short latest special same usual
    red blue black white green grey gray yellow pink purple orange brown silver gold cordless electric""".split()
)
# "is that twenty four months": a number after a demonstrative is an amount, not its noun
_NUMBERS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred every each all per".split()
)
# Where a new clause starts: an antecedent of "it" must be in an earlier clause ("my card got
# stuck, how do I get it back?"), not the same phrase ("is there a fee for changing it").
_CLAUSE = frozenset(
    "and but so because if then how what where when why can could will would should do does did is are was".split()
)
_TIME_NOUNS = frozenset(
    "day days week weeks time times date dates morning afternoon evening night slot month year".split()
)
_FRAGMENT_MARKERS = frozenset(
    """today tomorrow tonight morning afternoon evening night day days week weekend weekends month year
    am pm once twice daily weekly monthly yearly hourly or both either just only first second third fourth last next one two three four five six seven
    eight nine ten twenty thirty red blue black white green grey gray""".split()
)
_AUX = frozenset(
    """is are was were be been am do does did can could will would should shall may might must have
    has had what's where's how's it's that's there's i'm i'd i'll don't can't won't isn't aren't
    doesn't didn't i you we he she they it""".split()
)
# Nouns that mean nothing without what they belong to ("what's the price?").
_RELATIONAL = frozenset(
    """price prices cost costs fee fees charge charges size sizes colour colours color colors
    difference total warranty model models brand weight length deadline option options catch deal
    rate rates minimum maximum limit deposit""".split()
)
_OF = frozenset("of for on to in at".split())  # what a relational noun's argument follows
_COMPARATIVES = frozenset(
    """cheaper bigger smaller larger better faster quicker longer shorter newer older earlier later
    sooner closer nearer heavier lighter stronger""".split()
)
_PERSONS = frozenset(
    """husband wife son daughter kid kids child children mother mom mum dad father partner brother
    sister friend boyfriend girlfriend grandson granddaughter grandmother grandfather grandma grandpa
    baby doctor dentist nurse vet technician guy man woman boss neighbour neighbor landlord colleague
    dr mr mrs ms dog cat puppy kitten rabbit horse bird pet""".split()
)
_DETERMINERS = frozenset("my the a an our your this that these those his her their some".split())
_IT_DUMMY = re.compile(
    r"\b(is|was|does|did|will|would|could|can|isn't|doesn't|wasn't)\s+it\b.*\b(to|if|that|whether)\b"
    r"|\bit's\b.*\b(to|if|that|whether)\b"
)


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("’", "'")))


def _content(w: str) -> bool:
    return w not in FUNCTION_WORDS and w not in _ACK and not w.isdigit()


def _strip_fillers(words: list[str]) -> list[str]:
    while words:
        if words[:2] == ["thank", "you"]:
            words = words[2:]
        elif words[0] in _FILLERS or (words[0] == "there" and len(words) > 1 and words[1] not in _BE):
            words = words[1:]  # "hi there ...", "um ok ...": the greeting, not the question
        else:
            break
    return words


def _demonstrative_is_pronoun(words: list[str], i: int) -> bool:
    d, nxt = words[i], words[i + 1 : i + 4]
    if not nxt:
        return True
    prev = words[i - 1] if i else ""
    if d == "that" and prev and _content(prev) and nxt[0] not in _PREPS:
        return False  # a conjunction or relative: "I heard that you ...", "a store that sells ..."
    if d in ("that", "those") and nxt[0] in _TIME_NOUNS:
        return True  # "that day", "that time": a time said before ("this weekend" is fine)
    for w in nxt:
        if w in _ADJ:
            continue
        return (
            not _content(w)
            or w in _VERBS
            or w in _NOT_NOUN
            or w.endswith("ed")
            or w in _NUMBERS
            or w in _PREPS
        )
    return True


def _has_antecedent(words: list[str], i: int, plural: bool, person: bool) -> bool:
    before = words[:i]
    if person:
        return any(w in _PERSONS for w in before)
    if plural:
        return any(_content(w) and w.endswith("s") and not w.endswith("ss") for w in before) or any(
            w in ("people", "family", "staff", "team", "children", "kids") for w in before
        )
    for j, (a, b) in enumerate(zip(before, before[1:], strict=False)):
        if a in _DETERMINERS and _content(b) and any(w in _CLAUSE for w in before[j + 2 :]):
            return True
    return False


def _refers_back(t: str, words: list[str]) -> bool:
    if _ANAPHORA.search(t):
        return True
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        prev = words[i - 1] if i else ""
        if w in ("this", "that", "these", "those") and _demonstrative_is_pronoun(words, i):
            return True
        if w in ("that's", "this's"):
            return True
        if (
            w in ("one", "ones")
            and prev not in ("no", "every", "any", "some")
            and (not nxt or (not _content(nxt) and nxt != "of"))
        ):
            return True  # "the bigger one", "which one", "the one with the sea view"
        if (
            w == "there"
            and prev not in ("is", "are", "was", "were", "be", "been", "isn't", "aren't", "wasn't")
            and (nxt not in _BE)
        ):
            return True  # "how do I get there" (a place), not "is there parking"
        if (
            w in ("it", "its", "it's")
            and not _IT_DUMMY.search(t)
            and not _has_antecedent(words, i, False, False)
        ):
            return True
        if w in ("they", "them", "their", "theirs", "they're") and not _has_antecedent(words, i, True, False):
            return True
        if w in ("he", "she", "him", "his", "her", "hers") and not _has_antecedent(words, i, False, True):
            return True
    return False


def _is_fragment(words: list[str]) -> bool:
    content = [w for w in words if _content(w)]
    if len(words) < 2 or not content:
        return True
    if words[0] in _PREPS and len(words) <= 5:
        return True  # "on Sundays?", "for how long?", "with the same doctor?"
    if (
        len(words) <= 5
        and not any(w in _AUX for w in words)
        and any(w in _FRAGMENT_MARKERS or w.isdigit() for w in words)
    ):
        return True  # "saturday morning?", "monthly or yearly", "two adults and a child"
    if any(w in _RELATIONAL for w in content) and all(w in _RELATIONAL or w in _VERBS for w in content):
        return True  # "what's the price?", "what's the difference?"
    if words[:2] in (["how", "many"], ["how", "much"]) and all(w in _VERBS for w in content):
        return True  # "how many should I take?": many what? ("how much is a flu jab" names it)
    for i, w in enumerate(words[1:], 1):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in _RELATIONAL and words[i - 1] == "the" and nxt not in _OF:
            return True  # "what's the price with fitting" (of what?), not "the fee for transfers"
    return any(w in _COMPARATIVES for w in words) and "than" not in words


def is_self_contained(text: str, context: list[dict] | None = None) -> bool:
    """True when `text` can be understood without earlier turns (see the module docstring).

    Args:
        text: one caller utterance (a transcript: punctuation and case do not matter).
        context: the call's earlier turns; not read. The rule is the same on the first turn: a
            question that needs context is just as unsafe to store there.

    Returns:
        False for anything that may lean on earlier turns.
    """
    words = _strip_fillers(_norm(text).split())
    t = " ".join(words)
    if _is_fragment(words):
        return False
    if any(t == s or t.startswith(s + " ") for s in _CONTINUATION_STARTS):
        return False
    if any(t == s or t.endswith(" " + s) for s in _TRAILING):
        return False
    return not _refers_back(t, words)
