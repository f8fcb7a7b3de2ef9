"""Automatic replies (out of office, vacation, "has left the company"): pure, no I/O.

Evidence is weighed rather than any single rule trusted: RFC 3834 ``Auto-Submitted`` and
vendor headers are strong, a subject prefix such as "Automatic reply:" is strong, body
phrases ("I am out of the office until ...") need a second sign, because people also write
"I'm on vacation next week" in real answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from outreach.core.inbound.mailparse import MessageHeaders
from outreach.core.inbound.prefilter import LiteralPrefilter

# --------------------------------------------------------------------------- detection

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)*[\[(]?\s*(?:"
    r"out of (the )?office|ooo\b|automatic reply|auto(matic)?[- ]?(reply|response|respond)|"
    r"autoreply|autoresponse|auto:|abwesenheitsnotiz|abwesend|automatische antwort|"
    r"r[ée]ponse automatique|absence|absent|respuesta autom[áa]tica|fuera de (la )?oficina|"
    r"autosvar|vacation|on vacation|on leave|away from|automatyczna odpowied|"
    r"risposta automatica|fuori sede|resposta autom[áa]tica|automatisch antwoord|afwezig|"
    r"frånvaro|ausser haus|außer haus|urlaub|ferien|cong[ée]s?|vacaciones|ausente"
    r")",
    re.IGNORECASE,
)
_SUBJECT_ANYWHERE = re.compile(
    r"\(?(automatic|auto)[- ]?(response|reply)\)?|out of (the )?office|is out of|away from|"
    r"automatyczna odpowied|abwesenheit|réponse automatique|respuesta automática",
    re.IGNORECASE,
)
_BODY_PHRASES = re.compile(
    r"out of (the )?office|i am (currently )?(away|out)|i'?m (currently )?(away|out)\b|"
    r"(i am|i'?m) (currently )?(travel+ing|abroad|attending)\b|"
    r"(am|be|'m|will be) (on|in) (vacation|holiday|annual leave|leave|parental leave|"
    r"maternity leave|a business trip)|limited (access to )?(e-?mail|internet)|"
    r"(will|shall) (be back|return|respond|reply)[^.\n]{0,60}?(return|back|as soon as)|"
    r"(upon|on|after) my return|this is an? automa(ted|tic) (reply|response|message)|"
    r"auto-?reply|automatic reply|back in the office|returning (on|to the office)|"
    r"i will (be )?respond(ing)? to your (e-?mail|message)|"
    r"thank(s| you) for your (e-?mail|mail|message)"
    r"[^.\n]{0,40}[.!]?\s*i will (endeavou?r to )?(reply|respond|get back)|"
    r"reply (to you )?(shortly|as soon as possible)|away from (my desk|the office)|"
    r"no longer (with|employed|work)|(for|in case of) (urgent|urgency)|"
    r"if (this|it|your \w+) is urgent|"
    r"for anything urgent|urgent matters|without access to (my )?e-?mail|"
    # Spanish
    r"fuera de la oficina|estoy (de vacaciones|ausente|fuera)|estar[ée] (fuera|ausente)|"
    r"regresar[ée]|volver[ée]|respuesta autom[áa]tica|acceso limitado|de vacaciones|"
    # German
    r"nicht im b[üu]ro|abwesend|im urlaub|au(ß|ss)er haus|wieder (im b[üu]ro|erreichbar|da)|"
    r"abwesenheitsnotiz|automatische antwort|eingeschr[äa]nkt erreichbar|"
    r"keinen zugriff auf|in dringenden f[äa]llen|nur eingeschr[äa]nkt|urlaubsbedingt|"
    r"en caso de urgencia|para asuntos urgentes|en cas d'urgence|pour toute urgence|"
    # French
    r"absent(e)? du bureau|en cong[ée]s?|en vacances|je serai de retour|"
    r"actuellement absent|r[ée]ponse automatique|de retour le|absent(e)? jusqu|"
    # Italian, Portuguese, Dutch
    r"fuori (ufficio|sede)|sar[òo] assente|risposta automatica|per urgenze|"
    r"fora do escrit[óo]rio|estarei (ausente|fora)|resposta autom[áa]tica|"
    r"(ben|is) (momenteel )?afwezig|niet op kantoor|automatisch antwoord|"
    r"weer (aanwezig|bereikbaar)",
    re.IGNORECASE,
)
_BODY_PREFILTER = LiteralPrefilter(_BODY_PHRASES)  # most texts hold none of its phrases
_CONTACT_CHANGE = re.compile(
    r"no longer (with|employed|at|work(s|ing)? (at|for|with)|part of|an? (employee|member))|"
    r"(has|have) (now )?(left|departed) (the|our) (company|organi[sz]ation|firm|school|business|"
    r"team|practice|agency)|"
    r"(this|my|the) (e-?mail )?address (has changed|is no longer (valid|in use|active))|"
    r"mailbox (is )?no longer (monitored|in use|active)|"
    r"(is|am) no longer (with|at|employed|working)|"
    r"(this|the) (e-?mail )?(address|mailbox|account) is no longer (in use|active|monitored)|"
    r"ya no (trabaja|trabajo|forma parte|formo parte|est[áa] (con|en))|"
    r"ha dejado (la empresa|de trabajar)|(cuenta|direcci[óo]n)( de correo)? ya no (est[áa]|es) "
    r"(activa|v[áa]lida|en uso)|"
    r"nicht mehr (im unternehmen|bei uns|f[üu]r|in unserem|besch[äa]ftigt|t[äa]tig)|"
    r"(hat|haben) (das|unser) unternehmen verlassen|aus dem unternehmen ausgeschieden|"
    r"(adresse|postfach|e-?mail-?adresse) (ist|wird) nicht mehr (aktiv|g[üu]ltig|genutzt|"
    r"verwendet|abgerufen|besetzt)|"
    r"ne (fait|fais) plus partie|n'est plus (en poste|chez|employ|au sein|active|valide|utilis)|"
    r"a quitt[ée] (la soci|l'entreprise)|j'ai quitt[ée]|"
    r"non (fa|lavora) pi[ùu] (parte|per|presso)|ha lasciato (l'azienda|la societ)|"
    r"(n[ãa]o|j[áa] n[ãa]o) (faz mais parte|trabalha mais|trabalha)|deixou a empresa|"
    r"niet (meer|langer) (werkzaam|in dienst)",
    re.IGNORECASE,
)
#: Looser contact-change wording, only believed once the message is known to be automatic
#: ("Jordan has left Marigold Foods" in a person's answer is news, not an auto-reply).
_CONTACT_CHANGE_LOOSE = re.compile(
    r"\b(?:has|have) (?:now )?left (?:[A-Z][\w&.'-]+)|\bmy new (?:e-?mail )?address is\b|"
    r"\b[Mm]y last (?:working )?day (?:at|with|in) |\b(?:[Ii] have|[Ii]'ve) left\b"
)
_AUTO_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-vacation",
    "x-ms-exchange-organization-autoreply",
)


@dataclass(frozen=True)
class AutoReplyVerdict:
    """Whether a message is an automatic reply, and why."""

    is_auto_reply: bool
    reasons: tuple[str, ...]
    contact_change: bool
    automatic: bool  # sent by a machine (auto-generated), even if not a personal auto-reply


def strong_header_reasons(headers: MessageHeaders) -> list[str]:
    """Header evidence that a machine sent this message as a reply (RFC 3834 and vendors)."""
    reasons: list[str] = []
    auto = (headers.auto_submitted or "").strip().lower()
    if auto.startswith("auto-replied"):
        reasons.append(f"header Auto-Submitted: {auto} (RFC 3834)")
    for name in _AUTO_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            reasons.append(f"header {name}: {value[:40]}")
    precedence = (headers.get("precedence") or headers.get("x-precedence") or "").lower()
    if "auto_reply" in precedence or "auto-reply" in precedence:
        reasons.append(f"header Precedence: {precedence}")
    apple = headers.get("x-apple-action") or ""
    if "vacation" in apple.lower() or "autorep" in apple.lower():
        reasons.append(f"header X-Apple-Action: {apple}")
    if headers.get("x-ms-exchange-inbox-rules-loop"):
        reasons.append("header X-MS-Exchange-Inbox-Rules-Loop (Exchange rule reply)")
    if "autoresponder" in (headers.get("x-post-messageclass") or "").lower():
        reasons.append("header X-POST-MessageClass: Autoresponder")
    return reasons


def weak_header_reasons(headers: MessageHeaders) -> list[str]:
    """Header hints that only count together with other evidence."""
    reasons: list[str] = []
    auto = (headers.auto_submitted or "").strip().lower()
    if auto and not auto.startswith(("no", "auto-replied")):
        reasons.append(f"header Auto-Submitted: {auto}")
    precedence = (headers.get("precedence") or "").lower()
    if precedence in ("bulk", "junk"):
        reasons.append(f"header Precedence: {precedence}")
    if headers.get("x-auto-response-suppress"):
        reasons.append("header X-Auto-Response-Suppress")
    if (headers.return_path or "").replace(" ", "") == "<>":
        reasons.append("null Return-Path <>")
    return reasons


def _strip_list_tag(subject: str) -> str:
    return re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", subject)


def judge_auto_reply(
    headers: MessageHeaders, text: str, *, quotes_history: bool = False
) -> AutoReplyVerdict:
    """Weigh header, subject and body evidence for an automatic reply.

    ``quotes_history``: the body quotes earlier mail below the new text. Body phrases
    alone are then not believed: people quote, vacation responders rarely do.
    """
    strong = strong_header_reasons(headers)
    weak = weak_header_reasons(headers)
    subject = headers.subject
    subject_strong = bool(
        _SUBJECT_PREFIX.match(_strip_list_tag(subject)) or _SUBJECT_PREFIX.match(subject)
    )
    subject_weak = not subject_strong and bool(_SUBJECT_ANYWHERE.search(subject))
    head = text[:3000]
    body_hits = (
        {m.group(0).lower() for m in _BODY_PHRASES.finditer(head)}
        if _BODY_PREFILTER.maybe(head)
        else set()
    )
    contact = _CONTACT_CHANGE.search(head)
    reasons = list(strong)
    if subject_strong:
        reasons.append(f"subject {subject[:60]!r} starts like an automatic reply")
    elif subject_weak:
        reasons.append(f"subject {subject[:60]!r} mentions an automatic reply")
    if contact:
        reasons.append(f"body says {contact.group(0)!r} (contact change)")
    if body_hits:
        reasons.append("body phrases: " + ", ".join(sorted(body_hits)[:3]))
    content_signs = min(len(body_hits), 2) + subject_weak
    is_auto = bool(strong or subject_strong or contact) or (
        content_signs >= 1 and content_signs + len(weak) >= 2
    )
    if is_auto and not (strong or subject_strong or contact or weak or subject_weak):
        # body phrases only: people write "I'm on vacation next week" in real answers
        is_auto = len(text) < 2500 and not quotes_history
    if is_auto and not contact:
        contact = _CONTACT_CHANGE_LOOSE.search(head)
        if contact:
            reasons.append(f"body says {contact.group(0)!r} (contact change)")
    if is_auto:
        reasons.extend(weak)
    return AutoReplyVerdict(
        is_auto_reply=is_auto,
        reasons=tuple(reasons) if is_auto else tuple(weak),
        contact_change=bool(contact) and is_auto,
        automatic=bool(weak) or bool(strong),
    )


# --------------------------------------------------------------------------- return date

_MONTHS = {
    # English
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
    # German
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "mai": 5, "juni": 6,
    "juli": 7, "oktober": 10, "dezember": 12, "okt": 10, "dez": 12,
    # French
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "juin": 6,
    "juillet": 7, "août": 8, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11,
    "décembre": 12, "decembre": 12, "janv": 1, "févr": 2, "avr": 4, "juil": 7, "déc": 12,
    # Spanish
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11,
    "diciembre": 12, "ene": 1, "abr": 4, "ago": 8, "dic": 12,
    # Italian
    "gennaio": 1, "febbraio": 2, "aprile": 4, "maggio": 5, "giugno": 6, "luglio": 7,
    "settembre": 9, "ottobre": 10, "dicembre": 12,
    # Portuguese
    "janeiro": 1, "fevereiro": 2, "março": 3, "marco": 3, "maio": 5, "junho": 6, "julho": 7,
    "setembro": 9, "outubro": 10, "novembro": 11, "dezembro": 12,
    # Dutch
    "januari": 1, "februari": 2, "maart": 3, "mei": 5, "augustus": 8,
}  # fmt: skip
_WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6, "montag": 0, "dienstag": 1, "mittwoch": 2, "donnerstag": 3, "freitag": 4,
    "lundi": 0, "mardi": 1, "mercredi": 2, "jeudi": 3, "vendredi": 4, "lunes": 0,
    "martes": 1, "miércoles": 2, "miercoles": 2, "jueves": 3, "viernes": 4,
    "lunedì": 0, "lunedi": 0, "martedì": 1, "martedi": 1, "mercoledì": 2, "mercoledi": 2,
    "giovedì": 3, "giovedi": 3, "venerdì": 4, "venerdi": 4,
    "segunda-feira": 0, "terça-feira": 1, "terca-feira": 1, "quarta-feira": 2,
    "quinta-feira": 3, "sexta-feira": 4,
    "maandag": 0, "dinsdag": 1, "woensdag": 2, "donderdag": 3, "vrijdag": 4,
}  # fmt: skip
_MONTH_NAMES = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_WEEKDAY_NAMES = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th|er|º|°)?"
_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("iso", re.compile(r"\b(?P<y>20\d\d)-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")),
    (
        "day-month-name",
        re.compile(
            rf"\b(?P<d>\d{{1,2}}){_ORD}\.?\s*(?:of\s+|de\s+)?(?P<mon>{_MONTH_NAMES})\.?"
            rf"(?:,?\s*(?:de(?:l)?\s+)?(?P<y>(?:19|20)\d\d))?(?![\w])",
            re.IGNORECASE,
        ),
    ),
    (
        "month-name-day",
        re.compile(
            rf"\b(?P<mon>{_MONTH_NAMES})\.?\s+(?:the\s+)?(?P<d>\d{{1,2}}){_ORD}\b"
            rf"(?:,?\s*(?P<y>(?:19|20)\d\d))?",
            re.IGNORECASE,
        ),
    ),
    (
        "numeric",
        re.compile(
            r"(?<![\d/.:-])(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})"
            r"(?:(?P=sep)(?P<y>(?:19|20)?\d\d))?(?![\d/:-]|\.\d)"
        ),
    ),
    ("weekday", re.compile(rf"\b(?P<wd>{_WEEKDAY_NAMES})\b", re.IGNORECASE)),
    ("day-only", re.compile(r"\b(?:the\s+)?(?P<d>\d{1,2})(?:st|nd|rd|th)\b", re.IGNORECASE)),
]
_DATE_FOLLOWS = re.compile(
    rf"^,?\s*\(?(?:the\s+|le\s+|el\s+|den\s+)?(?:\d|(?:{_MONTH_NAMES})\b)", re.IGNORECASE
)
#: Words after which a date is the day the person is back.
_RETURN_CUES = re.compile(
    r"(back|return(ing)?|returns|in the office|zur[üu]ck|wieder|de retour|retour|"
    r"regres[oa]r?|regresar[ée]|volver[ée]|vuelvo|reincorporar[ée]|"
    r"rientr\w*|di ritorno|torner[òo]|di nuovo|retorn\w*|regress\w*|de volta|terug|weer|"
    r"(disponible|available|erreichbar|bereikbaar|disponibile|dispon[íi]vel)\s+"
    r"(à partir du|a partir del?|from|ab( dem)?|vanaf|dal|a partire dal?))\b[^.\n]{0,40}$",
    re.IGNORECASE,
)
#: "from X" / "ab X" / "vanaf X" starts an absence ("out from Dec 1") unless the words
#: after the date say the person is available again ("ab 07.12. wieder erreichbar").
_FROM_CUES = re.compile(
    r"(ab( dem)?|from|starting|à partir du|a partir del?|a partire dal?|vanaf|desde( el)?|"
    r"dal|dès le)\s*(?:the\s+|le\s+|el\s+|den\s+)?(?:(?:" + _WEEKDAY_NAMES + r"),?\s*)?$",
    re.IGNORECASE,
)
_BACK_AFTER = re.compile(
    r"^\.?[^.\n]{0,50}?\b(wieder|back|again|available|erreichbar|zur[üu]ck|disponible|bereikbaar|"
    r"aanwezig|terug|weer|disponibile|di nuovo|de nuevo|nuevamente|de volta|dispon[íi]vel)\b",
    re.IGNORECASE,
)
_UNTIL_CUES = re.compile(
    r"(until|till|til|through|thru|to|bis( zum| einschlie(ß|ss)lich)?|jusqu'?(au|à)|"
    r"hasta( el)?|au|al|fino al?|sino al?|at[ée]( ao| a| o| dia)?|tot( en met)?|t/m|"
    r"-|–)\s*(?:the\s+|le\s+|el\s+|den\s+|zum\s+)?"
    r"(?:(?:" + _WEEKDAY_NAMES + r"),?\s*)?$",
    re.IGNORECASE,
)
_INCLUSIVE = re.compile(
    r"(through|thru|inclusive|einschlie(ß|ss)lich|inclus|tot en met|t/m)", re.IGNORECASE
)
_INCLUSIVE_AFTER = re.compile(
    r"^\W{0,3}(inclusive|inclusively|einschlie(ß|ss)lich|inclus(e|ive)?|incluido|inclusive|"
    r"compres[oi]|incluso|inclusief)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _DateHit:
    when: date
    start: int
    cue: str  # "return", "until", "none"
    ambiguous: bool


def find_return_date(text: str, reference: date | None) -> date | None:
    """The date the sender says they are back, or None.

    "back on X" / "returning X" / "wieder am X" give X. "until X" / "bis X" / "jusqu'au X"
    / "hasta X" give X too (that is how people mean it, and how the labelled corpus
    reads it); "through X" gives the day after X. Years missing from the text are inferred
    from ``reference`` (the message date, else today): the first such date not long before it.
    Ambiguous numeric dates (05/07) are resolved to the reading closest after ``reference``.
    """
    hits = _date_hits(text[:4000], reference)
    if not hits:
        return None
    for cue in ("return", "until"):
        chosen = [h for h in hits if h.cue == cue]
        if chosen:
            return chosen[0].when
    unambiguous = [h for h in hits if not h.ambiguous and h.cue != "from"]
    return unambiguous[0].when if unambiguous else None


def _date_hits(text: str, reference: date | None) -> list[_DateHit]:
    hits: list[_DateHit] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            span = match.span()
            if any(s <= span[0] < e or s < span[1] <= e for s, e in taken):
                continue
            if kind == "weekday" and _DATE_FOLLOWS.match(text[span[1] : span[1] + 20]):
                continue  # "Monday, December 7th": the date that follows decides
            resolved = _resolve(kind, match, reference)
            if resolved is None:
                continue
            when, ambiguous = resolved
            before = text[max(0, span[0] - 60) : span[0]]
            cue = "none"
            if _UNTIL_CUES.search(before):
                cue = "until"
                if _INCLUSIVE.search(before[-25:]) or _INCLUSIVE_AFTER.match(
                    text[span[1] : span[1] + 20]
                ):
                    when += timedelta(days=1)
            elif _RETURN_CUES.search(before):
                cue = "return"
            elif _FROM_CUES.search(before):
                back = _BACK_AFTER.match(text[span[1] : span[1] + 60])
                cue = "return" if back else "from"
            if kind in ("weekday", "day-only") and cue in ("none", "from"):
                continue
            taken.append(span)
            hits.append(_DateHit(when, span[0], cue, ambiguous))
    hits.sort(key=lambda h: h.start)
    return _prefer_last_of_range(hits)


def _prefer_last_of_range(hits: list[_DateHit]) -> list[_DateHit]:
    """In 'from X to Y' the return cue on X is a departure: drop X when Y follows."""
    out = []
    for index, hit in enumerate(hits):
        following = hits[index + 1] if index + 1 < len(hits) else None
        if (
            hit.cue in ("return", "from")
            and following
            and following.cue == "until"
            and (following.start - hit.start < 40)
        ):
            continue
        out.append(hit)
    return out


def _resolve(kind: str, match: re.Match[str], reference: date | None) -> tuple[date, bool] | None:
    groups = match.groupdict()
    try:
        if kind == "iso":
            return date(int(groups["y"]), int(groups["m"]), int(groups["d"])), False
        if kind in ("day-month-name", "month-name-day"):
            month = _MONTHS[groups["mon"].lower()]
            return _with_year(int(groups["d"]), month, groups.get("y"), reference), False
        if kind == "numeric":
            return _resolve_numeric(groups, reference)
        if kind == "day-only" and reference:
            day = int(groups["d"])
            month, year = reference.month, reference.year
            if day < reference.day:
                month, year = (1, year + 1) if month == 12 else (month + 1, year)
            return date(year, month, day), False
        if kind == "weekday" and reference:
            ahead = (_WEEKDAYS[groups["wd"].lower()] - reference.weekday()) % 7 or 7
            return reference + timedelta(days=ahead), False
    except (ValueError, KeyError):
        return None
    return None


def _with_year(day: int, month: int, year: str | None, reference: date | None) -> date:
    if year:
        value = int(year)
        return date(value + 2000 if value < 100 else value, month, day)
    if reference is None:
        raise ValueError("no year")
    candidate = date(reference.year, month, day)
    if candidate < reference - timedelta(days=31):
        candidate = date(reference.year + 1, month, day)
    return candidate


def _resolve_numeric(groups: dict[str, str], reference: date | None) -> tuple[date, bool] | None:
    first, second = int(groups["a"]), int(groups["b"])
    year = groups.get("y")
    if not year and groups["sep"] == "-":
        return None
    if groups["sep"] == ".":  # continental d.m.y
        return _with_year(first, second, year, reference), False
    readings = []
    for day, month in ((first, second), (second, first)):
        try:
            readings.append(_with_year(day, month, year, reference))
        except ValueError:
            continue
    if not readings:
        return None
    if len(readings) == 1 or readings[0] == readings[1]:
        return readings[0], False
    if reference is None:
        return readings[1], True  # US order when nothing else decides
    future = [r for r in readings if r >= reference - timedelta(days=1)]
    pool = future or readings
    best = min(pool, key=lambda r: abs((r - reference).days))
    return best, True
