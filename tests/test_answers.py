"""Answers per question (core.inbound.answers): inline, numbered, keywords; help; corrections.

tests/fixtures/mail/answers holds whole replies of our own making in the formats of real
clients (Gmail plain and HTML, Outlook desktop/web/Mac/.com, Apple Mail, Thunderbird, mutt,
Yahoo, phones), inline and on top, numbered and free prose, in English, Spanish, French and
Portuguese. expected.json gives each one's campaign, its answers in the JSON shape, which
rule placed each part, whether the partner asked for help, and what the fixture shows. Each
runs through the real extraction (classify_message) and then split_answers. The tables
below test each rule on short texts; hypothesis checks the invariants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from outreach.core.inbound.answers import (
    OTHER,
    Answers,
    Rule,
    asked_for_help,
    correct_answers,
    declines,
    split_answers,
)
from outreach.core.inbound.classify import classify_message
from outreach.core.inbound.replytext import passages
from outreach.core.questions import (
    Problem,
    Question,
    build_questions,
    content_words,
    question_problems,
    template_questions,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mail" / "answers"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())

CAMPAIGNS: dict[str, list[dict[str, Any]]] = {
    "en": [
        {"id": "changes", "text": "How has your workplace changed this year?"},
        {"id": "lasting", "text": "Do you see any of those changes lasting?"},
        {
            "id": "help",
            "text": "Is there anything we can do to help?",
            "keywords": ["help", "could use", "need", "intern", "hire", "speaker"],
        },
    ],
    "es": [
        {"id": "changes", "text": "¿Cómo ha cambiado su lugar de trabajo este año?"},
        {"id": "lasting", "text": "¿Cree que alguno de esos cambios va a durar?"},
        {
            "id": "help",
            "text": "¿Hay algo que podamos hacer para ayudarles?",
            "keywords": [
                "ayuda",
                "necesitamos",
                "practicante",
                "contratar",
                "charla",
                "vendría bien",
            ],
        },
    ],
    "fr": [
        {"id": "changements", "text": "Comment votre entreprise a-t-elle changé cette année ?"},
        {"id": "durables", "text": "Pensez-vous que ces changements vont durer ?"},
        {
            "id": "aide",
            "text": "Pouvons-nous vous aider d'une façon ou d'une autre ?",
            "asks": True,
        },
    ],
    "pt": [
        {"id": "mudancas", "text": "Como o seu local de trabalho mudou este ano?"},
        {"id": "duradouras", "text": "Acha que essas mudanças vão durar?"},
        {"id": "ajuda", "text": "Podemos ajudar de alguma forma?", "asks": True},
    ],
}
EN = build_questions(CAMPAIGNS["en"])


def test_the_campaigns_of_the_fixtures_are_valid() -> None:
    assert all(question_problems(raw) == [] for raw in CAMPAIGNS.values())


def test_every_answers_fixture_is_expected() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(EXPECTED)


def _split_fixture(name: str) -> tuple[Answers, tuple[Question, ...]]:
    result = classify_message((FIXTURES / name).read_bytes())
    assert result.kind == "reply", result.reasons
    questions = build_questions(CAMPAIGNS[EXPECTED[name]["campaign"]])
    return split_answers(result.text or "", questions), questions


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_answers_fixture(name: str) -> None:
    want = EXPECTED[name]
    answers, questions = _split_fixture(name)
    assert answers.to_json(questions) == want["answers"], want["shows"]
    assert [f"{p.question or OTHER}: {p.rule.value}" for p in answers.parts] == want["rules"]
    assert asked_for_help(answers, questions) is want["asked_for_help"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_answers_fixture_split_again_gives_the_same_answers(name: str) -> None:
    """Its answers written inline under their questions split into the same answers."""
    answers, questions = _split_fixture(name)
    again = split_answers(_inline(questions, answers), questions)
    assert dict(again) == dict(answers)


def _inline(questions: tuple[Question, ...], answers: Any) -> str:
    return "\n\n".join(f"> {q.text}\n\n{answers[q.id]}" for q in questions if q.id in answers)


def _answers(text: str, questions: tuple[Question, ...] = EN) -> dict[str, str]:
    answers = split_answers(text, questions)
    return {**dict(answers), **({OTHER: answers.other} if answers.other else {})}


@pytest.mark.parametrize(
    "quoted",
    [
        "> How has your workplace changed this year?",
        "> how has your WORKPLACE changed this year",
        "> 1. How has your workplace changed this year?",
        "> 1) How has your workplace changed this year?",
        "> Q1: How has your workplace changed this year?",
        "> **How has your workplace changed this year?**",
        "> How has your workplace\n> changed this year?",
        "> How has your workplace changed",
        "> Hello Dana,\n>\n> Thanks for all you do. How has your workplace changed this year?",
        "> How have your workplaces changed in the last year?",
        "> What changed at your workplace this year?",
        ">> How has your workplace changed this year?",
    ],
)  # fmt: skip
def test_a_quoted_question_is_found_loosely(quoted: str) -> None:
    text = f"{quoted}\n\nWe went hybrid.\n\n> 3. Is there anything we can do to help?\n\nNo."
    assert _answers(text) == {"changes": "We went hybrid.", "help": "No."}


def test_accents_and_inverted_marks_do_not_hide_a_question() -> None:
    questions = build_questions(CAMPAIGNS["es"])
    text = (
        "> 1. ¿como ha cambiado su LUGAR de trabajo este ano?\n\nMás pedidos.\n\n"
        "> 2. ¿Cree que alguno de esos cambios va a durar?\n\nSí."
    )
    assert _answers(text, questions) == {"changes": "Más pedidos.", "lasting": "Sí."}


def test_a_quote_that_holds_no_question_leaves_its_answer_to_the_other_rules() -> None:
    text = (
        "> Thanks again for hosting our students last spring.\n\nIt was a pleasure!\n\n"
        "> Is there anything we can do to help?\n\nA speaker in May."
    )
    assert _answers(text) == {OTHER: "It was a pleasure!", "help": "A speaker in May."}


def test_below_several_quoted_questions_the_answer_is_the_last_ones() -> None:
    text = (
        "> 1. How has your workplace changed this year?\n> 2. Do you see any of those changes"
        " lasting?\n\nRemote Fridays stay."
    )
    assert _answers(text) == {"lasting": "Remote Fridays stay."}


def test_numbers_under_an_inline_question_are_that_questions_answer() -> None:
    text = "> 3. Is there anything we can do to help?\n\n1. interns\n2. a speaker\n3. a job board"
    assert _answers(text) == {"help": "1. interns\n2. a speaker\n3. a job board"}


def test_an_unquoted_copy_of_a_question_heads_its_answer() -> None:
    text = (
        "1. How has your workplace changed this year? We went hybrid.\n\n"
        "2. Do you see any of those changes lasting?\nYes.\n\n"
        "Is there anything we can do\nto help?\nA speaker."
    )
    assert _answers(text) == {"changes": "We went hybrid.", "lasting": "Yes.", "help": "A speaker."}


def test_a_sentence_that_starts_like_a_question_is_not_a_copy_of_it() -> None:
    text = "How has your workplace changed this year has been on our minds too."
    assert _answers(text) == {"changes": text}


# --------------------------------------------------------------------------- numbered


@pytest.mark.parametrize(
    "first, second, third",
    [
        ("1.", "2.", "3."), ("1)", "2)", "3)"), ("(1)", "(2)", "(3)"), ("Q1:", "Q2:", "Q3:"),
        ("Q1.", "Q2)", "Q3 -"), ("#1", "#2", "#3"), ("1-", "2-", "3-"), ("1 -", "2 -", "3 -"),
        ("1:", "2:", "3:"), ("Question 1:", "Question 2:", "Question 3:"),
        ("P1:", "P2:", "P3:"), ("Pregunta 1:", "Pregunta 2:", "Pregunta 3:"), ("q1)", "q2)", "q3)"),
        ("1.-", "2.-", "3.-"), ("**1.**", "**2.**", "**3.**"),
    ],
)  # fmt: skip
def test_numbered_answers(first: str, second: str, third: str) -> None:
    text = (
        f"Hi Sam,\n\n{first} Hybrid now.\n{second} Yes.\n\n{third} A speaker\nin May.\n\n"
        "Best,\nDana"
    )
    assert _answers(text) == {
        "changes": "Hybrid now.",
        "lasting": "Yes.",
        "help": "A speaker\nin May.",
    }


def test_numbers_are_the_questions_own() -> None:
    """A campaign that asks only some of its questions keeps their numbers."""
    questions = (
        Question("lasting", "Do you see any of those changes lasting?", 2),
        Question("help", "Is there anything we can do to help?", 3, keywords=["help"]),  # type: ignore[arg-type]
    )
    assert _answers("2. Yes.\n3. No.", questions) == {"lasting": "Yes.", "help": "No."}
    assert _answers("1. Yes.\n2. No.", questions)[OTHER] == "1. Yes.\n2. No."


def test_a_number_on_its_own_line_heads_the_answer_below_it() -> None:
    assert _answers("Q2:\nYes, it stays.\n\nQ3:\nNothing.") == {
        "lasting": "Yes, it stays.",
        "help": "Nothing.",
    }


def test_numbers_inside_one_line() -> None:
    text = "1. Hybrid. 2. Yes! 3) A speaker?"
    assert _answers(text) == {"changes": "Hybrid.", "lasting": "Yes!", "help": "A speaker?"}


def test_answering_only_some_numbers() -> None:
    assert _answers("2) Yes, all of it.\n3) Nothing, thanks.") == {
        "lasting": "Yes, all of it.",
        "help": "Nothing, thanks.",
    }


def test_a_copied_question_after_its_number_is_not_part_of_the_answer() -> None:
    text = (
        "1) How has your workplace changed this year?\nWe went hybrid.\n"
        "2) Do you see any of those changes lasting? Yes."
    )
    assert _answers(text) == {"changes": "We went hybrid.", "lasting": "Yes."}


@pytest.mark.parametrize(
    "text",
    [
        "1.5 million parts shipped this year, a record.",
        "10:30 on Tuesdays works for a visit.",
        "Q3 was our best quarter.",
        "2019. That was when it all started.",
        "3-4 interns would be great.",
    ],
)
def test_numbers_that_start_a_sentence_are_not_answer_numbers(text: str) -> None:
    assert all(p.rule is not Rule.NUMBERED for p in split_answers(text, EN).parts)


@pytest.mark.parametrize(
    "text, why",
    [
        ("1. new office\n2. two vans\n3. heat pumps\n4. paperless", "4 of 3 questions"),
        ("We reopened the hall. Things we would love:\n1. servers\n2. a cook\n3. a table",
         "a lead-in ending in ':' that is not 'my answers:'"),
        ("We reopened the hall.\n\nWhat we would love:\n\n1. servers\n2. a cook\n3. a table",
         "the lead-in in its own paragraph"),
        ("1. an intern\n2. a speaker for May\n3. a day to hire",
         "the items' words all ask for help"),
        ("3. Yes.\n2. Not sure.\n1. Hybrid.", "numbers that fall: a list inside answer 3"),
    ],
)  # fmt: skip
def test_numbers_that_do_not_fit_the_questions(text: str, why: str) -> None:
    parts = split_answers(text, EN).parts
    assert not any(p.rule is Rule.NUMBERED and p.question != "help" for p in parts), why


def test_a_lead_in_that_announces_answers_is_other() -> None:
    text = "My answers:\n1. Hybrid.\n2. Yes.\n3. Nothing."
    answers = split_answers(text, EN)
    assert answers.other == "My answers:"
    assert dict(answers) == {"changes": "Hybrid.", "lasting": "Yes.", "help": "Nothing."}


def test_a_list_that_falls_back_stays_in_the_answer_above() -> None:
    text = "1. Hybrid.\n2. Yes.\n3. We need:\n1. interns\n2. a speaker\n4. paperwork help"
    assert _answers(text)["help"] == "We need:\n1. interns\n2. a speaker\n4. paperwork help"


# --------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    "keyword, written",
    [
        ("intern", "interns"), ("intern", "internships"), ("hire", "hiring"), ("hire", "hired"),
        ("speaker", "speakers"), ("need", "needed"), ("company", "companies"),
        ("class", "classes"), ("need", "needs"),
        ("ayuda", "ayudarles"), ("ayuda", "ayudaría"), ("cambio", "cambiado"),
        ("cambio", "cambios"), ("practicante", "practicantes"), ("aide", "aider"),
        ("stagiaire", "stagiaires"), ("changement", "changements"), ("estagiário", "estagiarios"),
    ],
)  # fmt: skip
def test_keywords_match_other_forms_of_a_word(keyword: str, written: str) -> None:
    questions = (Question("help", "Anything?", 1, keywords=(keyword,)),)
    assert _answers(f"Well, {written} maybe.", questions) == {"help": f"Well, {written} maybe."}


@pytest.mark.parametrize(
    "keyword, written",
    [("help", "held"), ("could use", "could not"), ("intern", "inter")],
)
def test_keywords_do_not_match_other_words(keyword: str, written: str) -> None:
    questions = (Question("help", "Anything?", 1, keywords=(keyword,)),)
    assert _answers(f"Well, {written} maybe.", questions) == {OTHER: f"Well, {written} maybe."}


def test_default_keywords_are_the_questions_content_words() -> None:
    assert content_words("How has your workplace changed this year?") == ("workplace", "changed")
    assert content_words("¿Cómo ha cambiado su lugar de trabajo este año?") == (
        "cambiado",
        "lugar",
        "trabajo",
    )
    assert Question("x", "Is there anything we can do to help?", 1).keywords == ("help",)
    assert Question("x", "Anything else?", 1, keywords=()).keywords == ()


def test_a_paragraph_goes_to_the_question_whose_keywords_it_holds_most() -> None:
    text = "Our workplace changed: new building, new shifts.\n\nThe changes are lasting ones."
    assert _answers(text) == {
        "changes": "Our workplace changed: new building, new shifts.",
        "lasting": "The changes are lasting ones.",
    }


def test_a_phrase_says_more_than_a_word() -> None:
    """'could use' (two words) outweighs 'workplace' (one)."""
    text = "Our workplace is fine; we could use a hand in May."
    assert _answers(text) == {"help": text}


def test_a_tie_goes_to_the_question_after_the_one_answered_above() -> None:
    questions = (
        Question("first", "Any news about the lab?", 1),
        Question("second", "Any plans for the lab?", 2),
    )
    text = "News: the lab moved.\n\nThe lab, again.\n\nPlans: a lab."
    answers = split_answers(text, questions)
    assert [p.question for p in answers.parts] == ["first", "first", "second"]
    assert split_answers("The lab, again.", questions).parts[0].question == "first"


def test_one_paragraph_answers_at_most_one_question() -> None:
    text = "Our workplace changed and it is lasting, and we need help."
    answers = split_answers(text, EN)
    assert len(answers.parts) == 1 and len(answers) == 1


def test_one_short_paragraph_that_matches_nothing_is_other() -> None:
    answers = split_answers("Sounds great, talk soon!", EN)
    assert (dict(answers), answers.other) == ({}, "Sounds great, talk soon!")


def test_without_questions_every_word_is_other() -> None:
    answers = split_answers("1. Hybrid.\n\n> How?\n\nYes.", ())
    assert (dict(answers), answers.other) == ({}, "1. Hybrid.\n\nYes.")


# --------------------------------------------------------------------------- greeting, sign-off


@pytest.mark.parametrize(
    "text, want, other",
    [
        ("Hi Jordan,\n\nWe need a speaker.\n\nThanks, Maria", {"help": "We need a speaker."}, ""),
        ("Hola Sam:\nTodo bien.\nSaludos cordiales,\nJorge Medina", {}, "Todo bien."),
        ("Dear Ms Rivera,\nWe need a speaker.\nBest,\nOwen\nPark Dental\n555 0101",
         {"help": "We need a speaker."}, ""),
        ("We need a speaker.\n\nGrace Kim, CPA", {"help": "We need a speaker."}, ""),
        ("We need a speaker.\n\nCheers!", {"help": "We need a speaker."}, ""),
        ("> Is there anything we can do to help?\n\nGuest speakers\nThanks,\nDana",
         {"help": "Guest speakers"}, ""),
        ("Thanks for checking in!\n\nWe need a speaker.", {"help": "We need a speaker."},
         "Thanks for checking in!"),
        ("Hi Sam, we need a speaker.", {"help": "Hi Sam, we need a speaker."}, ""),
        ("Hi Sam,", {}, ""),
        ("Sam,\nWe need a speaker.", {"help": "We need a speaker."}, ""),
        ("Sam and team,\n\nWe need a speaker.", {"help": "We need a speaker."}, ""),
        ("Yes,\nwe need a speaker.", {"help": "Yes,\nwe need a speaker."}, ""),
    ],
)  # fmt: skip
def test_a_greeting_and_a_sign_off_answer_nothing(
    text: str, want: dict[str, str], other: str
) -> None:
    answers = split_answers(text, EN)
    assert (dict(answers), answers.other) == (want, other)


def test_a_divider_line_is_not_part_of_an_answer() -> None:
    assert _answers("1. Two shifts.\n--\n2. Yes.\n____\n3. No.") == {
        "changes": "Two shifts.",
        "lasting": "Yes.",
        "help": "No.",
    }


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "answer, no",
    [
        ("No.", True), ("No, thanks!", True), ("Nothing right now.", True),
        ("Not at the moment, thank you.", True), ("We're all set for now.", True),
        ("All good here.", True), ("We don't need anything, thanks.", True),
        ("Nope", True), ("Por ahora no, gracias.", True), ("Nada por ahora.", True),
        ("Estamos bien, gracias.", True), ("Rien pour le moment, merci.", True),
        ("Pas pour l'instant.", True), ("Não, obrigado.", True),
        ("Not really, but thank you.", True),
        ("No, but a speaker in May would be great.", False),
        ("We need interns, not speakers.", False), ("A speaker.", False),
        ("Nothing now; however next spring we will need two interns.", False),
        ("No pero nos vendría bien una charla.", False),
        ("No. " + "We would love a speaker for the apprentices day in May and an intern.", False),
    ],
)  # fmt: skip
def test_declines(answer: str, no: bool) -> None:
    assert declines(answer) is no


def test_asked_for_help() -> None:
    help_ = Question("help", "Is there anything we can do to help?", 3)
    asks = Question("needs", "What do you need?", 2, asks=True)
    plain = Question("changes", "What changed?", 1)
    assert help_.asks and asks.asks and not plain.asks
    assert asked_for_help({"help": "A speaker."}, [help_])
    assert asked_for_help({"needs": "Two interns."}, [asks])
    assert not asked_for_help({"changes": "We need two interns."}, [plain])
    assert not asked_for_help({"help": "No, thanks."}, [help_])
    assert not asked_for_help({"help": None, "other": "Help!"}, [help_])
    assert not asked_for_help({"help": "   "}, [help_])
    assert not asked_for_help({"help": "A speaker."}, [Question("help", "?", 1, asks=False)])


def test_the_json_shape_names_every_question() -> None:
    answers = split_answers(
        "> Is there anything we can do to help?\n\nA speaker.\n\nP.S. Congrats!", EN
    )
    assert answers.to_json(EN) == {
        "changes": None,
        "lasting": None,
        "help": "A speaker.\n\nP.S. Congrats!",
        "other": None,
    }
    assert answers.text.startswith("> Is there")
    assert list(answers) == ["help"] and answers["help"] and len(answers) == 1


# --------------------------------------------------------------------------- questions


def test_build_questions_and_the_template_context() -> None:
    questions = build_questions(
        [
            {"id": "changes", "text": "  How has your workplace changed?  "},
            {"id": "help", "text": "Anything?", "keywords": ["intern", " hire ", ""]},
            {"id": "needs", "text": "What do you need?", "asks": True},
            {"id": "quiet", "text": "Anything else you would like to share?", "keywords": []},
        ]
    )
    assert questions[3].keywords == ()  # keyword matching off for it
    assert split_answers("Anything else to share: congrats!", questions).other
    assert [q.number for q in questions] == [1, 2, 3, 4]
    assert questions[0].text == "How has your workplace changed?"
    assert questions[1].keywords == ("intern", "hire") and questions[1].asks
    assert questions[2].asks and not questions[0].asks
    assert template_questions(questions) == [
        {"id": "changes", "text": "How has your workplace changed?", "number": 1},
        {"id": "help", "text": "Anything?", "number": 2},
        {"id": "needs", "text": "What do you need?", "number": 3},
        {"id": "quiet", "text": "Anything else you would like to share?", "number": 4},
    ]


@pytest.mark.parametrize(
    "raw, problems",
    [
        ({"id": "x"}, [Problem("questions", "expected [[questions]] tables, got a table")]),
        ([["x"]], [Problem("questions[0]", "expected a table, got a list")]),
        ([{"text": "Why?"}], [Problem("questions[0]", "missing required key 'id'")]),
        ([{"id": "a"}], [Problem("questions[0]", "missing required key 'text'")]),
        ([{"id": 3, "text": "Why?"}],
         [Problem("questions[0].id", "expected a string, got an integer")]),
        ([{"id": "a b", "text": "Why?"}],
         [Problem("questions[0].id", "'a b': use only letters, digits, '_' and '-'")]),
        ([{"id": "", "text": "Why?"}],
         [Problem("questions[0].id", "'': use only letters, digits, '_' and '-'")]),
        ([{"id": "other", "text": "Why?"}],
         [Problem("questions[0].id",
                  "'other' is taken: answers keep what matched no question there")]),
        ([{"id": "a", "text": "Why?"}, {"id": "b", "text": "How?"}, {"id": "a", "text": "What?"}],
         [Problem("questions[2].id", "'a' is already the id of questions[0]")]),
        ([{"id": "a", "text": "  "}],
         [Problem("questions[0].text", "must not be empty: write the question")]),
        ([{"id": "a", "text": 4}],
         [Problem("questions[0].text", "expected a string, got an integer")]),
        ([{"id": "a", "text": "Why?", "keywords": "help"}],
         [Problem("questions[0].keywords", "expected a list of strings")]),
        ([{"id": "a", "text": "Why?", "keywords": ["help", 2]}],
         [Problem("questions[0].keywords", "expected a list of strings")]),
        ([{"id": "a", "text": "Why?", "keywords": ["help", "?!"]}],
         [Problem("questions[0].keywords", "'?!' has no letters or digits to look for")]),
        ([{"id": "a", "text": "Why?", "asks": "yes"}],
         [Problem("questions[0].asks", "expected a boolean, got a string")]),
        ([{"id": "a", "text": "Why?", "ask": True}],
         [Problem("questions[0].ask", "unknown key; expected one of: id, text, keywords, asks")]),
        ([{"id": "Help_2-b", "text": "Why?", "keywords": [], "asks": False}], []),
        ([], []),
    ],
)  # fmt: skip
def test_question_problems(raw: object, problems: list[Problem]) -> None:
    assert question_problems(raw) == problems


# --------------------------------------------------------------------------- corrections


STORED = {"changes": "We went hybrid.\n\nWe could use a speaker.", "lasting": None,
          "help": None, "other": "Congrats on the building!"}  # fmt: skip


def test_a_correction_moves_text_from_one_answer_to_another() -> None:
    moved = correct_answers(STORED, EN, "help", "We could use a speaker.")
    assert moved == {
        "changes": "We went hybrid.",
        "lasting": None,
        "help": "We could use a speaker.",
        "other": "Congrats on the building!",
    }


def test_a_correction_takes_its_text_out_of_other() -> None:
    moved = correct_answers(STORED, EN, "lasting", "Congrats on the building!")
    assert moved["lasting"] == "Congrats on the building!" and moved["other"] is None
    assert moved["changes"] == STORED["changes"]


def test_what_a_correction_leaves_out_of_an_answer_goes_to_other() -> None:
    moved = correct_answers(STORED, EN, "changes", "We went hybrid.")
    assert moved["changes"] == "We went hybrid."
    assert moved["other"] == "Congrats on the building!\n\nWe could use a speaker."


def test_a_correction_with_no_text_clears_the_answer_into_other() -> None:
    moved = correct_answers(STORED, EN, "changes", "  ")
    assert moved["changes"] is None
    assert moved["other"] == (
        "Congrats on the building!\n\nWe went hybrid.\n\nWe could use a speaker."
    )


def test_a_correction_of_part_of_a_paragraph_and_of_new_words() -> None:
    stored = {"other": "Hi! We went hybrid. Talk soon.", "legacy": "kept"}
    moved = correct_answers(stored, EN, "changes", "We went hybrid.")
    assert moved == {"changes": "We went hybrid.", "lasting": None, "help": None,
                     "legacy": "kept", "other": "Hi! Talk soon."}  # fmt: skip
    typed = correct_answers({}, EN, "help", "A speaker (from the phone call).")
    assert typed["help"] == "A speaker (from the phone call)." and typed["other"] is None


def test_a_correction_takes_whole_words_only_and_keeps_what_it_narrows() -> None:
    stored = {"changes": "Yes. We went hybrid and we could use a speaker.", "other": "Yesterday"}
    moved = correct_answers(stored, EN, "lasting", "Yes.")
    assert (moved["changes"], moved["other"]) == (
        "We went hybrid and we could use a speaker.",
        "Yesterday",
    )
    narrowed = correct_answers(moved, EN, "changes", "We went hybrid")
    assert narrowed["changes"] == "We went hybrid"
    assert narrowed["other"] == "Yesterday\n\nand we could use a speaker."


def test_a_correction_names_a_question_of_the_campaign() -> None:
    with pytest.raises(ValueError, match="no question 'helpp' in this campaign; its "
                       "questions: changes, lasting, help"):  # fmt: skip
        correct_answers(STORED, EN, "helpp", "x")


# --------------------------------------------------------------------------- properties


QUESTION_TEXTS = [q.text for q in EN] + ["¿Hay algo que podamos hacer para ayudarles?", "Why?"]
PIECES = [
    *(f"> {t}" for t in QUESTION_TEXTS), *QUESTION_TEXTS, "1. ", "2) ", "(3) ", "Q1: ", "#2 ",
    "4. ", "Hi Sam,", "Thanks,", "Dana", "Sent from my iPhone", "-- ", ">", "> > deep", "",
    "We need a speaker.", "We could use interns.", "Our workplace changed.", "lasting", ":",
    "Saludos cordiales,", "Grace Kim, CPA", "--", "____", "  ", "\t", "No, thanks.",
]  # fmt: skip


@st.composite
def campaigns(draw: st.DrawFn) -> tuple[Question, ...]:
    ids = draw(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=5, unique=True))
    return tuple(
        Question(
            id=qid,
            text=draw(st.one_of(st.sampled_from(QUESTION_TEXTS), st.text(min_size=1, max_size=30))),
            number=n + 1,
            keywords=draw(
                st.one_of(st.none(), st.lists(st.text(max_size=12), max_size=4).map(tuple))
            ),
        )
        for n, qid in enumerate(ids)
        if qid != OTHER
    )


def _emptied(text: str) -> str:
    return "\n".join(line if line.strip() else "" for line in text.split("\n"))


def _check_parts(text: str, answers: Answers, questions: tuple[Question, ...]) -> None:
    ids = {q.id for q in questions}
    own = [p.text for p in passages(text) if not p.quoted]
    end = 0
    for part in answers.parts:
        assert part.text == text[part.start : part.end] and part.text.strip()
        assert part.start >= end  # in order, and no two parts share a character
        end = part.end
        assert part.question is None or part.question in ids
        # the partner's words, never a quote (passages() keeps blank lines empty)
        assert any(_emptied(part.text) in words for words in own)
    for qid, answer in answers.items():
        assert answer == "\n\n".join(p.text for p in answers.parts if p.question == qid)
    assert answers.other == "\n\n".join(p.text for p in answers.parts if p.question is None)
    assert answers.text == text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=40)), max_size=30).map(
        lambda rows: "\n".join(rows)
    ),
    campaigns(),
)
@example("Why?\n> Why?\n\r\n0", ())  # a line of only "\r" is a blank line
def test_splitting_never_raises_and_each_part_is_the_partners_own_words(
    text: str, questions: tuple[Question, ...]
) -> None:
    answers = split_answers(text, questions)
    _check_parts(text, answers, questions)
    asked_for_help(answers, questions)
    json.dumps(answers.to_json(questions))


VOCABULARY = [
    "we", "went", "hybrid", "the", "shop", "added", "a", "shift", "yes", "it", "stays",
    "speaker", "interns", "need", "could", "use", "workplace", "changed", "lasting", "changes",
    "maybe", "in", "may", "two", "students", "office", "help", "sure", "not", "really",
]  # fmt: skip
# two words or more: a last line of one capitalised word ("Two.") reads as a name that signs
sentences = st.lists(st.sampled_from(VOCABULARY), min_size=2, max_size=12).map(
    lambda words: " ".join(words).capitalize() + "."
)
answer_texts = st.lists(
    st.lists(sentences, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=3
).map("\n\n".join)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(st.none(), answer_texts), min_size=3, max_size=3))
def test_answers_written_inline_split_into_the_same_answers(texts: list[str | None]) -> None:
    answers = {q.id: t for q, t in zip(EN, texts, strict=True) if t is not None}
    assume(answers)
    text = _inline(EN, answers)
    split = split_answers(text, EN)
    assert dict(split) == answers
    assert split.other == ""


#: words of no question's keywords: numbered answers made of them fit their numbers
NEUTRAL = [
    w
    for w in VOCABULARY
    if not split_answers(w, EN).by_question
    and w not in {word for q in EN for keyword in q.keywords or () for word in keyword.split()}
]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(NEUTRAL), min_size=1, max_size=10).map(
                lambda words: " ".join(words).capitalize() + "."
            ),
        ),
        min_size=3,
        max_size=3,
    )
)
def test_numbered_answers_split_into_the_same_answers(texts: list[str | None]) -> None:
    answers = {q.id: t for q, t in zip(EN, texts, strict=True) if t is not None}
    assume(answers)
    text = "\n".join(f"{q.number}. {answers[q.id]}" for q in EN if q.id in answers)
    assert dict(split_answers(text, EN)) == answers


stored_answers = st.fixed_dictionaries(
    {},
    optional={key: st.one_of(st.none(), answer_texts) for key in ("changes", "help", OTHER)},
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    stored_answers,
    st.sampled_from([q.id for q in EN]),
    st.one_of(answer_texts, sentences, st.just("")),
)
def test_a_correction_loses_no_word_and_gives_the_same_answers_twice(
    stored: dict[str, str | None], question_id: str, text: str
) -> None:
    def words(answers: dict[str, str | None]) -> set[str]:
        return {w for value in answers.values() for w in (value or "").split()}

    corrected = correct_answers(stored, EN, question_id, text)
    assert corrected[question_id] == (text.strip() or None)
    assert words(stored) <= words(corrected)
    assert correct_answers(corrected, EN, question_id, text) == corrected
