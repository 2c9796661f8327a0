"""The caller-intent step (agent/call/intents.py): rules, embedder, decisions, keypad menu.

No STT here: these are the words as heard. The spoken, noisy version is the benchmark
(`python -m agent.bench.intents`); the session-level behaviour is tests/test_voice_intents.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.bench.intents import DATA, load_rows, score
from agent.call.intents import (
    Intent,
    IntentClassifier,
    TurnContext,
    after_anything_else,
    decide,
    menu_choice,
    rule_intent,
)
from agent.call.prompt import greeting_for, menu_announcement
from core.errors import UserError
from core.tenants import Tenant, load_tenant


@pytest.fixture(scope="module")
def clf() -> IntentClassifier:
    return IntentClassifier()


@pytest.mark.parametrize(
    "text",
    [
        "That's all, thanks, bye.",
        "Goodbye.",
        "No, that's everything, bye.",
        "Okay, thank you, goodbye!",
        "Thank you so much, have a good day.",
        "You can hang up now.",
    ],
)
def test_a_closing_as_a_whole_ends_the_call(clf: IntentClassifier, text: str) -> None:
    assert decide(clf.classify(text)) == "end_call"


@pytest.mark.parametrize(
    "text",
    [
        "I want to say goodbye to my old plan, how do I switch?",
        "I said goodbye to the delivery driver but the box was empty.",
        "The phone line keeps hanging up on me.",
        "How do I hang a picture frame?",
        "uh-huh",
        "Okay.",
        "Mm.",
        "Mhm.",
        "Thanks.",
        "Thank you.",
        "Yeah.",
        "",
    ],
)
def test_a_question_or_a_backchannel_never_ends_the_call(clf: IntentClassifier, text: str) -> None:
    intent = clf.classify(text)
    assert intent.label != "end_call"
    assert decide(intent, TurnContext(agent_was_speaking=True)) not in ("end_call", "ask_end")
    assert decide(intent) != "end_call"


def test_a_lone_bye_during_the_agents_answer_is_asked_about() -> None:
    bye = rule_intent("Bye.")
    assert bye.label == "end_call"
    assert decide(bye) == "end_call"  # heard on its own, after the agent had finished
    assert decide(bye, TurnContext(agent_was_speaking=True)) == "ask_end"
    assert decide(bye, TurnContext(stt_confidence=0.3)) == "ask_end"  # a noisy, unsure transcript
    # even a full closing is only asked about when the STT was unsure or it overlapped the agent
    full = rule_intent("That's all, thanks, bye.")
    assert decide(full, TurnContext(agent_was_speaking=True)) == "ask_end"
    assert decide(full, TurnContext(stt_confidence=0.3)) == "ask_end"


def test_a_near_closing_only_asks() -> None:
    near = rule_intent("Okay well bye")  # every word a closing word: a closing
    assert decide(near) == "end_call"
    unsure = rule_intent("Sounds weird bye")
    assert unsure.label == "end_call" and decide(unsure) == "ask_end"


def test_answers_to_anything_else() -> None:
    assert after_anything_else("No thanks.") == "end_call"
    assert after_anything_else("Nope, that's it.") == "end_call"
    assert after_anything_else("Yes please.") == "continue"
    assert after_anything_else("Do you deliver?") is None


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Actually, can I speak to a real person?", "human"),
        ("Representative.", "human"),
        ("I'd like to speak to a manager.", "human"),
        ("Can I get someone on the phone?", "human"),
        ("Are you a real person?", "none"),
        ("Do your staff install kitchens?", "none"),
        ("Can you repeat that?", "repeat"),
        ("Sorry, what was that?", "repeat"),
        ("Can you repeat my order number back to me later?", "none"),
        ("You're talking too fast.", "slow_down"),
        ("My internet is slow.", "none"),
        ("Let's start over.", "start_over"),
        ("When does the sale start?", "none"),
    ],
)
def test_labels(clf: IntentClassifier, text: str, label: str) -> None:
    assert clf.classify(text).label == label


def test_the_embedder_never_says_end_call(clf: IntentClassifier) -> None:
    # a paraphrase the rules do not know, far from the none exemplars: still not a hang-up
    intent = clf.classify("I reckon we're finished here, cheerio mate")
    assert decide(intent) != "end_call" or intent.why == "closing as a whole"


def test_the_authored_set_as_written(clf: IntentClassifier) -> None:
    """The words exactly as authored (no STT): the goals hold on every split."""
    rows = load_rows(DATA)
    assert len(rows) >= 150 and {r["split"] for r in rows} == {"dev", "heldout", "fresh"}
    res = score(rows, [r["text"] for r in rows], clf)
    for split in ("dev", "heldout", "fresh"):
        assert res[split]["end_call_precision"] == 1.0, res[split]["errors"]
        # "fresh" was written before the rules and exemplars last changed and is never tuned on:
        # it misses the 95 % goal as written (87.5 %: "route me to the service desk", "any humans
        # there?"); the floor guards against getting worse, the README reports the number
        floor = 0.85 if split == "fresh" else 0.95
        assert res[split]["human_recall"] >= floor, res[split]["errors"]


def test_the_embedders_extra_exemplars_are_the_dev_split_only() -> None:
    """agent/call/intent_exemplars.json is the dev split as exported, and holds no utterance of
    the heldout or fresh splits (they would no longer measure anything)."""
    from agent.bench.intents import exemplars_of
    from agent.call.intents import dev_exemplars, normalise

    rows = load_rows(DATA)
    shipped = dev_exemplars()
    assert shipped == exemplars_of(rows) and sum(map(len, shipped.values())) >= 200
    tested = {normalise(r["text"]) for r in rows if r["split"] != "dev"}
    assert not tested & {t for v in shipped.values() for t in v}


# ------------------------------------------------ what whisper wrote (tests/data/whisper_intents.yaml)

WHISPER = yaml.safe_load((Path(__file__).parent / "data" / "whisper_intents.yaml").read_text())["heard"]
HEARD = {h["heard"] for h in WHISPER}


def test_whisper_transcripts_of_the_dev_set(clf: IntentClassifier) -> None:
    """Every dev utterance as whisper heard it on the line: no hang-up on anything but a closing;
    each request for a human transfers and nothing else does, unless recorded as a known miss."""
    assert len(WHISPER) >= 900 and {h["line"] for h in WHISPER} >= {"clean_g711", "babble_10db"}
    assert sum(h["known_miss"] for h in WHISPER) <= 0.025 * len(WHISPER)  # 20 of 978 when recorded
    wrong = []
    for h in WHISPER:
        action = decide(
            clf.classify(h["heard"]), TurnContext(agent_was_speaking=h.get("during_agent", False))
        )
        bad = action == "end_call" and h["label"] != "end_call"
        if not h["known_miss"]:
            bad |= (h["label"] == "human") != (action == "transfer")
            bad |= h["label"] == "end_call" and action not in ("end_call", "ask_end")
        if bad:
            wrong.append((h["line"], h["spoken"], h["heard"], action))
    assert not wrong


@pytest.mark.parametrize(
    ("heard", "label"),
    [
        ("Help me through to someone.", "human"),  # put me through
        ("but me too, someone who can help.", "human"),
        ("I'm tired of giving a person.", "human"),  # give me a person
        ("I need customer support.", "human"),
        ("agents.", "human"),
        ("Representatives, Representatives, Representatives.", "human"),
        ("Refresentive test. Refresentive test.", "human"),
        ("Then you can actually need to someone.", "human"),  # connect me to someone
        ("Can you put me through an agent?", "human"),
        ("I'll ask to someone, please.", "human"),  # talk to someone
        ("I'd like to represent it.", "human"),  # a representative
        ("I need a speaker of real humans.", "human"),
        ("Nothing more. Thanks. Goodbye.", "end_call"),
        ("Could you say that floor?", "slow_down"),
        ("Well, go down.", "slow_down"),
        ("Great, thanks for your health. Bye.", "end_call"),
        ("That's all from now, thank you.", "end_call"),
    ],
)
def test_rules_for_whisper_transcripts(heard: str, label: str) -> None:
    assert heard in HEARD  # a real transcript, not an invented one
    assert rule_intent(heard).label == label


@pytest.mark.parametrize(
    "text",
    [
        "Is your customer service desk open on Sundays?",
        "Is there someone at the store on Sunday?",
        "Do you have human-safe paint?",
        "Can somebody deliver it to my house?",
        "I talked to someone yesterday and they said it was in stock.",
        "I gave the receipt to someone at the till last week.",  # long: a story, not a request
        "I spoke to a representative yesterday about my order.",
        "My agent number is 3 2 1.",
        "Prices go down in January.",
        "How do I give my old drill to someone?",
        "Who do I send it to a person?",
    ],
)
def test_the_new_rules_leave_questions_alone(text: str) -> None:
    assert rule_intent(text).label == "none"


# ---------------------------------------------------------------------------- keypad menu

MENU = {"1": "billing", "2": "human", "3": "opening_hours"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Billing.", "1"),
        ("Billing, please.", "1"),
        ("The billing department.", "1"),
        ("Option two.", "2"),
        ("One.", "1"),
        ("3", "3"),
        ("Opening hours.", "3"),
        ("A person, please.", "2"),
        ("I have a question about billing for my last invoice from March.", None),
        ("What are your opening hours on Sunday?", None),
        ("I want to talk to a plumber.", None),
        ("Two of them.", None),
    ],
)
def test_spoken_menu_choices(text: str, key: str | None) -> None:
    assert menu_choice(text, MENU) == key


def test_menu_from_yaml_and_in_the_greeting(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(
        'business_name: Shop\ngreeting: "Shop here."\nmenu: {1: billing, 2: human}\n'
    )
    t = load_tenant("shop", tmp_path)
    assert t.menu == {"1": "billing", "2": "human"}
    assert greeting_for(t) == (
        "Shop here. For billing, press 1 or say billing; to talk to a person, press 2 or say person."
    )
    assert menu_announcement(Tenant(name="x", business_name="X", greeting="Hi.")) == ""
    assert greeting_for(Tenant(name="x", business_name="X", greeting="Hi.")) == "Hi."
    (tmp_path / "bad.yaml").write_text('business_name: B\ngreeting: "B."\nmenu: {12: billing}\n')
    with pytest.raises(UserError, match="menu"):
        load_tenant("bad", tmp_path)


def test_intent_is_a_value() -> None:
    assert Intent("none", 0.5) == Intent("none", 0.5)
