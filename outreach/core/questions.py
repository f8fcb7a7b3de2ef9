"""A campaign's questions: their type, the checks of ``[[questions]]``, the template context,
and the words a question is found by. Pure: no I/O.

A campaign may declare its questions::

    [[questions]]
    id = "changes"
    text = "How has your workplace changed?"
    [[questions]]
    id = "help"
    text = "Is there anything we can do to help?"
    keywords = ["help", "could use", "need", "intern", "hire", "speaker"]

Words are compared folded (lower case, no accents) and lightly stemmed (plurals, -ed, -ing,
Spanish, Portuguese and French endings), so that "hiring" finds the keyword "hire" and
"¿cómo ha cambiado?" the question "¿Cómo ha cambiado?". :mod:`outreach.core.inbound.answers`
uses them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "OTHER",
    "QUESTION_KEYS",
    "STOP_WORDS",
    "WORD",
    "Problem",
    "Question",
    "build_questions",
    "content_words",
    "fold",
    "matches_keyword",
    "question_problems",
    "template_questions",
    "text_stems",
    "text_words",
    "word_stem",
]

#: The key under which answers keep what matched no question (so no question may use it).
OTHER = "other"
QUESTION_KEYS = ("id", "text", "keywords", "asks")
_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Question:
    """One question a campaign asks. ``keywords`` None means the question's own content words
    (an explicit empty tuple turns keyword matching off for it); ``asks`` None means True
    only for the id ``help``: a non-empty answer to such a question is a request for help."""

    id: str
    text: str
    number: int
    keywords: tuple[str, ...] | None = None
    asks: bool | None = None

    def __post_init__(self) -> None:
        if self.keywords is None:
            object.__setattr__(self, "keywords", content_words(self.text))
        else:  # a list would make the question unhashable
            object.__setattr__(self, "keywords", tuple(self.keywords))
        if self.asks is None:
            object.__setattr__(self, "asks", self.id == "help")


class Problem(NamedTuple):
    """A bad value in a campaign's ``[[questions]]``: its key path (``questions[1].id``,
    counted from 0 like ``steps[0]``) and what is wrong. The loader adds file and line."""

    key: str
    message: str


_KIND = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
         list: "a list", dict: "a table"}  # fmt: skip


def _kind(value: object) -> str:
    return _KIND.get(type(value), type(value).__name__)


def question_problems(raw: object) -> list[Problem]:
    """Every problem in the raw TOML value of ``questions`` (an array of tables)."""
    if not isinstance(raw, list):
        return [Problem("questions", f"expected [[questions]] tables, got {_kind(raw)}")]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"questions[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, f"expected a table, got {_kind(item)}"))
            continue
        for key in item:
            if key not in QUESTION_KEYS:
                problems.append(
                    Problem(
                        f"{path}.{key}", f"unknown key; expected one of: {', '.join(QUESTION_KEYS)}"
                    )
                )
        problems.extend(_id_problems(item, path, index, seen))
        text = item.get("text")
        if "text" not in item:
            problems.append(Problem(path, "missing required key 'text'"))
        elif not isinstance(text, str):
            problems.append(Problem(f"{path}.text", f"expected a string, got {_kind(text)}"))
        elif not text.strip():
            problems.append(Problem(f"{path}.text", "must not be empty: write the question"))
        problems.extend(_keyword_problems(item, path))
        if "asks" in item and not isinstance(item["asks"], bool):
            problems.append(
                Problem(f"{path}.asks", f"expected a boolean, got {_kind(item['asks'])}")
            )
    return problems


def _id_problems(
    item: dict[str, object], path: str, index: int, seen: dict[str, int]
) -> list[Problem]:
    if "id" not in item:
        return [Problem(path, "missing required key 'id'")]
    value = item["id"]
    key = f"{path}.id"
    if not isinstance(value, str):
        return [Problem(key, f"expected a string, got {_kind(value)}")]
    if not _ID.fullmatch(value):
        return [Problem(key, f"{value!r}: use only letters, digits, '_' and '-'")]
    if value == OTHER:
        return [Problem(key, f"{OTHER!r} is taken: answers keep what matched no question there")]
    if value in seen:
        return [Problem(key, f"{value!r} is already the id of questions[{seen[value]}]")]
    seen[value] = index
    return []


def _keyword_problems(item: dict[str, object], path: str) -> list[Problem]:
    if "keywords" not in item:
        return []
    value = item["keywords"]
    key = f"{path}.keywords"
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        return [Problem(key, "expected a list of strings")]
    return [
        Problem(key, f"{word!r} has no letters or digits to look for")
        for word in value
        if isinstance(word, str) and not text_words(word)
    ]


def build_questions(raw: Sequence[Mapping[str, object]]) -> tuple[Question, ...]:
    """Questions from raw ``[[questions]]`` tables that :func:`question_problems` passed,
    numbered from 1 in their order."""
    questions = []
    for index, item in enumerate(raw):
        keywords = item.get("keywords")
        asks = item.get("asks")
        questions.append(
            Question(
                id=str(item["id"]),
                text=str(item["text"]).strip(),
                number=index + 1,
                keywords=None
                if not isinstance(keywords, list)
                else tuple(str(word).strip() for word in keywords if str(word).strip()),
                asks=asks if isinstance(asks, bool) else None,
            )
        )
    return tuple(questions)


def template_questions(questions: Sequence[Question]) -> list[dict[str, str | int]]:
    """What templates see as ``questions``: ``{id, text, number}`` each, in order."""
    return [{"id": q.id, "text": q.text, "number": q.number} for q in questions]


# --------------------------------------------------------------------------- words

# Function words of English, Spanish, French and Portuguese, accents folded, with a few verbs
# every question uses and time words ("this year" says nothing of what a question is about):
# a question's other words are its default keywords.
_STOP_TEXT = """
    a about above after again all also am an and any anything are as at be been before being
    both but by can could did do does doing done each else even ever every few for from further
    get got had has have having he her here hers him his how i if in into is it its just let
    like lot lots make many may me might more most much must my no nor not now of off on once
    only or other our ours out over own please same see seen shall she should so some something
    still such than that the their them then there these they thing things think this those
    through to too under up upon us very was way we were what when where which while who whom
    whose why will with would yet you your yours
    year years month months week weeks day days today time
    al algo alguna alguno algun algunas algunos ante como con cual cuales cuando de del desde
    donde el ella ellos en entre era es esa esas ese eso esos esta estan estar estas este esto
    estos fue ha han hay hace hacer la las le les lo los mas me mi mis muy nada ni no nos
    nuestra nuestro nuestras nuestros o otra otro para pero poco por podemos poder puede
    pueden puedo que quien se ser si sin sobre son su sus tambien te tiene tienen tu tus u
    un una unas uno unos usted ustedes ve ver vez y ya ano anos mes meses semana dia dias tiempo
    au aux avec ce ces cet cette chose comment dans des du elle elles est et etre eu faire fait
    il ils je leur leurs mais ne nos notre nous on ont ou par pas peut pouvez pouvons plus pour
    quel quelle quelles quels quelque qui quoi rien sa sans ses son sont sur tres un une vos
    votre vous annee annees an ans mois semaine jour jours temps
    ao aos as com da das do dos em essa esse isso isto mas muito na nas nao no nos nossa nosso
    os ou pela pelo pode podemos por qual quais sao seu sua tem voce voces tempo
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
_CLITIC = re.compile(
    r"(?<=ar|er|ir)(?:les|los|las|nos|le|lo|la|se|me|te)$|(?<=ando|endo)(?:les|los|las|nos|le|lo|la|se)$"
)
# After a plural's "s": one ending, longest first (English verb forms and adverbs, Spanish and
# Portuguese verb and gender endings, French nouns), then a final "e". Each with the letters
# it must leave: "ar" four, so that "lugar" stays whole while "ayudar" gives "ayud".
_SUFFIX_TEXT = """amente mente iendo ando ement aron ieron ing ied ado ada ido ida edly ed ly er ir
    ar o a ee"""
_SUFFIXES = tuple(sorted(_SUFFIX_TEXT.split(), key=len, reverse=True))
_KEEP = {"ar": 4}


@lru_cache(maxsize=8192)
def fold(word: str) -> str:
    """Lower case without accents: 'Cómo' and 'como', 'Changé' and 'change' are one word."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@lru_cache(maxsize=8192)
def word_stem(word: str) -> str:
    """A light stem of a folded word: change/changes/changed/changing, hire/hires/hiring,
    cambio/cambios/cambiado/cambiar, ayuda/ayudar/ayudarles, stagiaire/stagiaires,
    changement/changements all give one stem each (at least three letters are kept)."""
    stem = _CLITIC.sub("", word) if len(word) > 6 else word
    if stem.endswith("ies") and len(stem) > 4:
        stem = stem[:-3] + "y"  # companies
    elif stem.endswith("s") and not stem.endswith(("ss", "us", "is")) and len(stem) > 3:
        stem = stem[:-1]  # not business, bus, analysis
    for suffix in _SUFFIXES:
        if stem.endswith(suffix) and len(stem) - len(suffix) >= _KEEP.get(suffix, 3):
            stem = stem[: -len(suffix)] + ("y" if suffix == "ied" else "")
            break
    if stem.endswith("e") and len(stem) >= 4:
        stem = stem[:-1]
    return stem


def text_words(text: str) -> list[str]:
    """A text's words, folded."""
    return [fold(m.group()) for m in WORD.finditer(text)]


def text_stems(text: str) -> list[str]:
    """A text's words, folded and stemmed."""
    return [word_stem(t) for t in text_words(text)]


def content_words(text: str) -> tuple[str, ...]:
    """A question's own words without function words (its default keywords), as written."""
    found: dict[str, str] = {}
    for match in WORD.finditer(text):
        folded = fold(match.group())
        if folded not in STOP_WORDS and not folded.isdigit() and len(folded) > 1:
            found.setdefault(word_stem(folded), match.group().lower())
    return tuple(found.values())


def matches_keyword(word: str, keyword: str) -> bool:
    """A word's stem matches a keyword's stem, or extends a long one (intern: internship)."""
    return word == keyword or (len(keyword) >= 4 and word.startswith(keyword))
