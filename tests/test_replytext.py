"""Reply text and signature (outreach.core.inbound.replytext): quote headers, signatures,
inline answers.

tests/fixtures/mail/replies holds whole messages of our own making, one or more per rule, in
the formats of real clients (Gmail, Outlook desktop/web/mobile, Apple Mail, Thunderbird, mutt,
phones) and several languages; expected.json gives each one's exact text and signature and
the rule it shows. The tables below test each rule on short bodies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.core.inbound.bodytext import QUOTE_MARK, normalize_newlines
from outreach.core.inbound.classify import classify_message
from outreach.core.inbound.replytext import Passage, extract_reply, new_words, passages, split_reply
from outreach.core.inbound.replytext.headers import banner_end, quoted_lines
from outreach.core.inbound.replytext.signature import is_closing, is_device_line, is_greeting

REPLIES = Path(__file__).parent / "fixtures" / "mail" / "replies"
EXPECTED: dict[str, dict[str, str]] = json.loads((REPLIES / "expected.json").read_text())
ASK = "> Hello Dana,\n>\n> Could you host interns this spring?\n>\n> Sam\n"


def test_every_reply_fixture_is_expected() -> None:
    assert sorted(p.name for p in REPLIES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reply_fixture(name: str) -> None:
    result = classify_message((REPLIES / name).read_bytes())
    want = EXPECTED[name]
    assert result.kind == "reply", result.reasons
    assert (result.text, result.signature) == (want["text"], want["signature"]), want["rule"]


# --------------------------------------------------------------------------- quote headers


@pytest.mark.parametrize(
    "header",
    [
        "2016-03-03 17:21 GMT+01:00 Sam Rivera <sam@district.example>:",
        "Sam Rivera <sam@district.example> schrieb am Mo., 30. Nov. 2026, 08:02:",
        "Am 30.11.2026 um 08:02 schrieb Sam Rivera <sam@district.example>:",
        "man. 30. nov. 2026 kl. 08:02 skrev Sam Rivera <sam@district.example>:",
        "Den 30. nov. 2026 kl. 08.02 skrev Sam Rivera:",
        "Den mån 30 nov. 2026 kl 08:02 skrev Sam Rivera <sam@district.example>:",
        "På 30 november 2026 på 08:02:18, Sam Rivera (sam@district.example) skrev:",
        "Op ma 30 nov. 2026 om 08:02 schreef Sam Rivera <sam@district.example>:",
        "Op 30-11-2026 om 08:02 heeft Sam Rivera <sam@district.example> het volgende geschreven:",
        "Vào 08:02 30 tháng 11, 2026, Sam Rivera <sam@district.example> đã viết:",
        "În lun., 30 nov. 2026 la 08:02, Sam Rivera <sam@district.example> a scris:",
        "Le lun. 30 nov. 2026 à 08:02, Sam Rivera <sam@district.example> a écrit :",
        "El lun, 30 nov 2026 a las 8:02, Sam Rivera (<sam@district.example>) escribió:",
        "Em seg., 30 de nov. de 2026 às 08:02, Sam Rivera <sam@district.example> escreveu:",
        "Il giorno lun 30 nov 2026 alle ore 08:02 Sam Rivera <sam@district.example> ha scritto:",
        "On Mon, 30 Nov 2026 at 08:02, Sam Rivera <\nsam@district.example> wrote:",
        "On Mon, 30 Nov 2026 at 08:02, Sam Rivera\n<sam@district.example> wrote:",
        "On Nov 30, 2026, at 08:02, Sam Rivera <\nsam@district.example>\nwrote:",
        "On Mon, Nov 30, 2026 at 8:02 AM, Sam Rivera <sam at district.example> wrote:",
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Mensaje original-----",
        "-----Message d'origine-----",
        "-----Antwort Nachricht-----",
        "*-------- Original Message --------*",
        "-------- Original message --------",
        "---- On Mon, 30 Nov 2026 08:02 Sam Rivera <sam@district.example> wrote ----",
        "Begin forwarded message:",
    ],
)  # fmt: skip
@pytest.mark.parametrize("quoting", ["> ", ""])
def test_quote_header_ends_the_reply(header: str, quoting: str) -> None:
    """Above '>' quoting and above unquoted history (HTML turned to text loses the '>')."""
    history = "Hello Dana,\nCould you host interns this spring?\nSam\n"
    history = "\n".join(quoting + line for line in history.splitlines())
    body = f"Yes, two in March.\n\nDana\n\n{header}\n\n{history}\n"
    assert split_reply(body).text == "Yes, two in March.\n\nDana"


@pytest.mark.parametrize(
    "block",
    [
        "From: Sam Rivera <sam@district.example>\nSent: Monday, November 30, 2026 8:02 AM\n"
        "To: Dana Reyes\nSubject: Check-in",
        "Von: Sam Rivera <sam@district.example>\nGesendet: Montag, 30. November 2026 08:02\n"
        "An: Dana Reyes\nBetreff: Check-in",
        "Da: Sam Rivera <sam@district.example>\nInviato: lunedì 30 novembre 2026 08:02\n"
        "A: Dana Reyes\nOggetto: Check-in",
        "De: Sam Rivera <sam@district.example>\nEnviado: lunes, 30 de noviembre de 2026 8:02\n"
        "Para: Dana Reyes\nAsunto: Check-in",
        "De : Sam Rivera <sam@district.example>\nEnvoyé : lundi 30 novembre 2026 08:02\n"
        "À : Dana Reyes\nObjet : Check-in",
        "De: Sam Rivera <sam@district.example>\nEnviada em: segunda-feira, 30 de novembro de "
        "2026 08:02\nPara: Dana Reyes\nAssunto: Check-in",
        "Fra: Sam Rivera <sam@district.example>\nSendt: 30. november 2026 08:02\nTil: Dana\n"
        "Emne: Check-in",
        "Från: Sam Rivera [mailto:sam@district.example]\nSkickat: den 30 november 2026 08:02\n"
        "Till: Dana\nÄmne: Check-in",
        "Van: Sam Rivera <sam@district.example>\nVerzonden: maandag 30 november 2026 08:02\n"
        "Aan: Dana\nOnderwerp: Check-in",
        "________________________________\nFrom: Sam Rivera <sam@district.example>\n"
        "Sent: Monday, November 30, 2026 8:02 AM\nTo: Dana Reyes\nSubject: Check-in",
        "----------\nDe: Sam Rivera <sam@district.example>\nData: 30 de novembro de 2026\n"
        "Para: Dana\nAssunto: Check-in",
        "  *From:* Sam Rivera [mailto:\n  sam@district.example]\n  *Sent:* Monday, November 30, "
        "2026 8:02 AM\n  *To:* Dana\n  *Subject:* Check-in",
        "*Subject:* Check-in\n*Date:* Mon, 30 Nov 2026 08:02\n*From:* Sam <sam@district.example>"
        "\n*To:* Dana",
    ],
)  # fmt: skip
def test_header_block_ends_the_reply(block: str) -> None:
    body = f"Yes, two in March.\n\nDana\n\n{block}\n\nHello Dana,\nCould you host interns?\n"
    assert split_reply(body).text == "Yes, two in March.\n\nDana"


@pytest.mark.parametrize(
    "body",
    [
        "Dates we can host:\nFrom: 1 March\nTo: 30 April\n\nLi",
        "Invitation for an interview:\n\nDate: Wednesday 3 March\nTime: 7:00\nAddress: 130 Fox St"
        "\n\nPlease bring your ID.",
        "We can do March -- April is busy.\nOn Monday we start the new shift.",
        "Please see our feedback below.\n\n---------- Feedback ----------\n\nAll good.",
    ],
)  # fmt: skip
def test_answers_that_look_like_headers_are_kept(body: str) -> None:
    assert split_reply(body) == split_reply(body + "\n")
    assert split_reply(body).text == body


def test_a_header_on_top_with_the_answer_below_is_not_a_cut() -> None:
    body = "From: Sam Rivera <sam@district.example>\nSent: Monday\nSubject: Check-in\n\nYes."
    assert split_reply(body).text == "Yes."


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my iPhone", "Sent from my iPad", "Sent from Outlook Mobile",
        "Get Outlook for iOS<https://aka.ms/o0ukef>", "Get Outlook for Android",
        "Sent from Mail for Windows", "Sent from Yahoo Mail on Android",
        "Envoyé depuis mon iPhone", "Envoyé de mon iPhone",
        "Envoyé à partir de Outlook pour Android", "Enviado desde mi iPhone",
        "Enviado desde mi smartphone Samsung Galaxy.", "Enviado do meu iPhone",
        "Von meinem iPhone gesendet", "Von meinem Samsung Galaxy Smartphone gesendet",
        "Gesendet von meinem iPad", "Gesendet mit der WEB.DE Mail App",
        "Outlook für Android herunterladen", "Inviato da iPhone", "Inviato dal mio iPhone",
        "Sent from my BlackBerry 10 smartphone.", "Sent via BlackBerry from T-Mobile",
        "Sent from my Android device with K-9 Mail. Please excuse my brevity.",
        "Sent from my Verizon, Samsung Galaxy smartphone", "Sent with Airmail",
        "Sent from Samsung Mobile", "Sent from my Galaxy", "Sent with Proton Mail secure email.",
        "Sendt fra min iPhone", "Skickat från min iPhone", "Verzonden vanaf mijn iPhone",
        "Hent Outlook for iOS", "Obtener Outlook para Android",
    ],
)  # fmt: skip
def test_device_lines_are_signature(line: str) -> None:
    assert is_device_line(line)
    reply = split_reply(f"Yes, two in March.\n\n{line}\n\nOn Mon, Sam wrote:\n{ASK}")
    assert (reply.text, reply.signature) == ("Yes, two in March.", line)


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my desk, which is much easier than my phone.",
        "Sent from our office in Madrid are the signed forms, and the rest follows?",
        "We sent you the forms from our office yesterday.",
    ],
)
def test_sentences_that_start_like_device_lines_are_text(line: str) -> None:
    assert not is_device_line(line)
    assert split_reply(f"Yes.\n\n{line}").signature == ""


@pytest.mark.parametrize(
    ("body", "text", "signature"),
    [
        ("Yes.\n\n-- \nMaria Lopez\nAcme", "Yes.", "-- \nMaria Lopez\nAcme"),
        ("Yes.\n--\nMaria | Acme\n+1 555 0100", "Yes.", "--\nMaria | Acme\n+1 555 0100"),
        ("Yes.\n\nThanks, Maria\n-- \nMaria Lopez", "Yes.\n\nThanks, Maria", "-- \nMaria Lopez"),
        ("March -- April.\n\nThanks, Maria", "March -- April.\n\nThanks, Maria", ""),
        ("1. Hybrid.\n--\n2. Yes.\n--\n3. Help.", "1. Hybrid.\n--\n2. Yes.\n--\n3. Help.", ""),
        ("Why?\n--\nIs it needed?", "Why?\n--\nIs it needed?", ""),
        ("1. Hybrid.\n--  \n2. Yes.", "1. Hybrid.\n--\n2. Yes.", ""),
        ("Yes.\n\nSent from my iPhone\n\nMaria", "Yes.", "Sent from my iPhone\n\nMaria"),
        ("-- \nSent from my iPhone", "", "-- \nSent from my iPhone"),
    ],
)  # fmt: skip
def test_signature_block(body: str, text: str, signature: str) -> None:
    assert split_reply(body) == split_reply(body)  # pure
    reply = split_reply(body)
    assert (reply.text, reply.signature) == (text, signature)


def test_a_long_block_after_bare_dashes_is_text() -> None:
    answers = "\n".join(f"Point {n}: we would like more help with the schedule" for n in range(14))
    body = f"Notes:\n--\n{answers}"
    assert split_reply(body).text == body


# --------------------------------------------------------------------------- inline answers


INLINE = (
    "On Mon, Nov 30, 2026 at 8:02 AM Sam <sam@district.example> wrote:\n"
    "> 1. How has your workplace changed?\n\nWe went hybrid.\n\n"
    "> 2. Do you see lasting changes?\n\nYes.\n\n"
    "> 3. Is there anything we can do to help?\n>\n> Sam\n\nThanks,\nDana\n"
)


def test_inline_answers_keep_the_questions_they_follow() -> None:
    reply = split_reply(INLINE)
    assert reply.text == (
        "> 1. How has your workplace changed?\n\nWe went hybrid.\n\n"
        "> 2. Do you see lasting changes?\n\nYes.\n\nThanks,\nDana"
    )
    assert reply.passages == (
        Passage(True, "1. How has your workplace changed?"),
        Passage(False, "We went hybrid."),
        Passage(True, "2. Do you see lasting changes?"),
        Passage(False, "Yes.\n\nThanks,\nDana"),
    )
    assert new_words(reply.text) == "We went hybrid.\n\n\nYes.\n\nThanks,\nDana"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # bottom-posting: one quote, the answer below it: the quote is history
        ("On Mon, Sam wrote:\n" + ASK + "\nYes, two.\n\nDana", "Yes, two.\n\nDana"),
        ("Hi,\n\nOn Mon, Sam wrote:\n" + ASK + "\nYes, two.", "Hi,\n\nYes, two."),
        # top-posting with a sign-off below the quote: the quote is history
        ("Yes.\n\nOn Mon, Sam wrote:\n" + ASK + "\nCheers,\nDana", "Yes.\n\nCheers,\nDana"),
        ("Yes, two.\n\nOn Mon, Sam wrote:\n" + ASK + "\nDana Reyes\nBrightWorks\n+1 555 0101",
         "Yes, two.\n\nDana Reyes\nBrightWorks\n+1 555 0101"),
        # words above and one answered quote: inline
        ("Hi Sam, answers below.\n\n> Could you host interns?\n\nYes, two.",
         "Hi Sam, answers below.\n\n> Could you host interns?\n\nYes, two."),
        # an answer that starts like a sign-off still answers
        ("> Q1?\nA1.\n> Is there anything we can do to help?\nThanks, we are fine.",
         "> Q1?\nA1.\n> Is there anything we can do to help?\nThanks, we are fine."),
        ("> Q1?\nA1.\n> Anything we can do?\nNo", "> Q1?\nA1.\n> Anything we can do?\nNo"),
        # only quoted text: nothing new
        (ASK, ""),
    ],
)  # fmt: skip
def test_which_quotes_are_kept(body: str, text: str) -> None:
    assert split_reply(body).text == text


def test_quoted_questions_do_not_make_a_reply_an_unsubscribe_request() -> None:
    raw = (
        b"From: Dana <dana@brightworks.example>\nTo: partners@district.example\n"
        b"Subject: Re: Check-in\nIn-Reply-To: <checkin@district.example>\n\n"
        b"> Could you host interns?\n\nYes.\n\n"
        b"> To stop receiving these check-ins, remove me from the list is all you need to say.\n\n"
        b"Maybe in April.\n"
    )
    result = classify_message(raw)
    assert result.kind == "reply", result.reasons
    assert "remove me from the list" in (result.text or "")


@pytest.mark.parametrize(
    ("lines", "closing"),
    [
        (["Thanks, Dana"], True), (["Best,", "Owen"], True), (["Dana"], True),
        (["Un saludo,", "Marta"], True), (["Mit freundlichen Grüßen", "Katrin Weber"], True),
        (["Dana Reyes", "BrightWorks", "+1 555 0101"], True),
        (["Thanks, we are fine."], False), (["Yes"], False), (["Nada"], False),
        (["Two students in March."], False), (["Dana", "We would like a speaker for May."], False),
    ],
)  # fmt: skip
def test_closing_lines(lines: list[str], closing: bool) -> None:
    assert is_closing(lines) is closing


@pytest.mark.parametrize(
    ("lines", "closing"),
    [
        (["Saludos cordiales,", "Jorge Medina"], True), (["Un cordial saludo,", "Ana"], True),
        (["Saludos cordiales,"], True), (["Grace Kim, CPA"], True),
        (["Best regards,", "Dana Reyes, Owner"], True),
        (["Dana Reyes, Owner", "BrightWorks"], True),
        (["Definitely"], False), (["Definitely."], False), (["Absolutely"], False),
        (["Yes, Definitely"], False), (["Por supuesto"], False), (["Claro"], False),
    ],
)  # fmt: skip
def test_spanish_sign_offs_and_titled_names_close_a_mail_and_one_word_answers_do_not(
    lines: list[str], closing: bool
) -> None:
    """Issue 20's sign-off gaps: "Saludos cordiales," (its second word is no name) and
    "Grace Kim, CPA" (a title after the name) close a mail; "Definitely" answers."""
    assert is_closing(lines) is closing


def test_a_one_word_last_inline_answer_keeps_the_questions_it_answers() -> None:
    body = (
        "> 1. How has your workplace changed?\n\nWe went hybrid.\n\n"
        "> 2. Do you see any of those changes lasting?\n\nDefinitely\n\n"
        "> 3. Is there anything we can do to help?\n"
    )
    assert split_reply(body).text == (
        "> 1. How has your workplace changed?\n\nWe went hybrid.\n\n"
        "> 2. Do you see any of those changes lasting?\n\nDefinitely"
    )


def test_a_spanish_sign_off_below_the_last_quote_answers_nothing() -> None:
    body = (
        "Respuestas abajo.\n\n> 2. ¿Cree que esos cambios van a durar?\n\nSí.\n\n"
        "> 3. ¿Hay algo que podamos hacer para ayudarles?\n\nSaludos cordiales,\nJorge Medina\n"
    )
    assert split_reply(body).text == (
        "Respuestas abajo.\n\n> 2. ¿Cree que esos cambios van a durar?\n\nSí.\n\n"
        "Saludos cordiales,\nJorge Medina"
    )


@pytest.mark.parametrize(
    ("line", "greeting"),
    [
        ("Hi,", True), ("Hola Sam:", True), ("Dear Ms Rivera,", True), ("Hallo Herr Rivera,", True),
        ("Hi Sam, answers below.", False), ("Yes.", False), ("Hello, see my notes", False),
    ],
)  # fmt: skip
def test_greeting_lines(line: str, greeting: bool) -> None:
    assert is_greeting([line]) is greeting


@pytest.mark.parametrize(
    ("lines", "quoted"),
    [
        (["> could you host interns? We are", "planning placements.", "> Sam"], [1, 1, 1]),
        (["> Cody Hart <c@x.example> w=", "rote:", ""], [1, 1, 0]),
        (["> How has it changed?", "We hired two.", "> Anything else?"], [1, 0, 1]),
        (["> How has it changed", "yes, two.", "more words of mine"], [1, 0, 0]),
        (["> Question?", "no", "> Next?"], [1, 0, 1]),
        (["Answer", "> quoted"], [0, 1]),
        (["See <https://example.org/a/very/long/path", "> for the form."], [0, 0]),
    ],
)  # fmt: skip
def test_quoted_lines_take_the_tails_a_client_wrapped(lines: list[str], quoted: list[int]) -> None:
    assert quoted_lines(lines) == [bool(q) for q in quoted]


@pytest.mark.parametrize(
    ("banner", "dropped"),
    [
        ("CAUTION: This email originated from outside of the organization. Do not click links "
         "or open attachments unless you recognize the sender.", True),
        ("[EXTERNAL] This message came from outside the district. Be careful with links.", True),
        ("ACHTUNG: Diese E-Mail stammt von außerhalb der Organisation.", True),
        ("ATTENTION : ce courriel provient de l'extérieur de l'organisation.", True),
        ("PRECAUCIÓN: Este correo se originó fuera de la organización.", True),
        ("Caution: our external auditors visit in March, so April is better for the students.",
         False),
        ("We work with outside companies on most projects.", False),
    ],
)  # fmt: skip
def test_gateway_banner_on_top(banner: str, dropped: bool) -> None:
    body = f"{banner}\n\nYes, two in April.\n\nDana"
    assert (banner_end(body.split("\n")) == 1) is dropped
    want = "Yes, two in April.\n\nDana" if dropped else body
    assert split_reply(body).text == want


def test_passages_keep_a_wrapped_question_whole() -> None:
    text = "> How has your workplace changed this year? We would\nlike to hear more.\n\nBusier."
    assert passages(text) == (
        Passage(True, "How has your workplace changed this year? We would\nlike to hear more."),
        Passage(False, "Busier."),
    )
    assert new_words(text) == "Busier."


def test_passages_of_a_text_without_quotes() -> None:
    assert passages("Yes.\n\nDana") == (Passage(False, "Yes.\n\nDana"),)
    assert passages("") == ()
    assert extract_reply("") == ""


# --------------------------------------------------------------------------- properties

PIECES = [
    "Yes, two in March.", "Dana", "Thanks,", "-- ", "--", "Sent from my iPhone", "",
    "On Mon, Nov 30, 2026 at 8:02 AM Sam <sam@district.example> wrote:", "> Could you host?",
    ">", "> > older", "-----Original Message-----", "From: Sam <sam@district.example>",
    "Sent: Monday", "To: Dana", "Subject: Check-in", "_" * 32, "----------", QUOTE_MARK,
    "Am 30.11.2026 um 08:02 schrieb Sam:", "De : Sam", "Objet : Check-in", "Hi,",
    "2016-03-03 17:21 GMT+01:00 Sam <sam@district.example>:", "Get Outlook for iOS",
    "riak-users mailing list", "1. We moved.", "| old quote", "  indented  ", "\u200eMontag\u200e",
]  # fmt: skip
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff\u202a-\u202e]")


def _body_lines(body: str) -> set[str]:
    text = _INVISIBLE.sub("", normalize_newlines(body))
    return {line.rstrip() for line in text.split("\n")}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=40)), max_size=40).map("\n".join)
)
def test_extraction_never_raises_and_only_returns_lines_of_the_body(body: str) -> None:
    reply = split_reply(body)
    lines = _body_lines(body)
    for part in (reply.text, reply.signature):
        assert all(line.rstrip() in lines for line in part.split("\n") if line.strip())
    assert QUOTE_MARK not in reply.text + reply.signature
