"""Which fact does a question point at (npc_brain.recall)?"""

from __future__ import annotations

from hypothesis import given, strategies as st

from npc_brain.recall import content_terms, is_follow_up, recall_for_turn, relevant_facts

FACTS = [
    "A healing poultice of comfrey costs five coppers.",
    "The baron's tax collector arrives on the first day of every month.",
    "Nightshade grows wild in the ruins of Saint Orin's chapel.",
    "The Albatross flies to the island of Cumulon every third day.",
]


def test_the_fact_that_shares_the_rare_words_wins():
    assert relevant_facts("When does the tax collector come?", FACTS) == [FACTS[1]]
    assert relevant_facts("Where does nightshade grow?", FACTS) == [FACTS[2]]
    assert relevant_facts("How often do you fly to Cumulon?", FACTS) == [FACTS[3]]  # flies ~ fly
    assert relevant_facts("What's a poultice going for these days?", FACTS) == [FACTS[0]]


def test_small_talk_recalls_nothing():
    for q in ("Hello there!", "How are you?", "What do you think?", "Is it?", ""):
        assert relevant_facts(q, FACTS) == []
    assert relevant_facts("When does the tax collector come?", []) == []


def test_a_tie_recalls_both_and_never_more_than_two():
    facts = ["The bridge toll is one riddle.", "Goats live beyond the bridge.", "The bridge is old."]
    got = relevant_facts("What about the bridge?", facts)
    assert len(got) == 2 and set(got) <= set(facts)


def test_stop_words_and_endings():
    assert content_terms("Are the wolves hunting tonight?") == {"wolf", "hunt", "tonight"}
    assert "the" not in content_terms("the the the") and not content_terms("What is it?")


@given(st.text(max_size=200), st.lists(st.text(max_size=80), max_size=8))
def test_any_text_gives_facts_from_the_list(q, facts):
    got = relevant_facts(q, facts)
    assert len(got) <= 2 and all(g in facts for g in got)


def test_a_follow_up_question_is_matched_through_the_previous_line():
    before = "When does the tax collector come?"
    for q in ("And is he strict?", "Every month? Are you sure about that?", "So when is that?",
              "Really? Tell me again?", "Repeat please."):
        assert is_follow_up(q) and recall_for_turn(q, FACTS, before) == [FACTS[1]]
    # the turn's own match wins; small talk, statements and long questions do not reach back
    assert recall_for_turn("And where does nightshade grow?", FACTS, before) == [FACTS[2]]
    for q in ("Thanks for that.", "Thanks!", "Lovely weather?",
              "Is that the sort of thing folk around here worry about all the time, would you say?"):
        assert recall_for_turn(q, FACTS, before) == []
    assert recall_for_turn("Is that far?", FACTS, "") == []
