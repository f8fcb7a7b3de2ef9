"""The signature at the end of a reply: the ``-- `` block and device lines.

What counts as signature (cut from the text, kept apart):

- the RFC 3676 section 4.3 delimiter, a line of exactly ``-- ``, and everything after it (up
  to 20 lines); the same line without its space or with more (``--``, as HTML conversions
  and many transports leave it) only before a shorter block (at most 12 short lines). Either
  way not before a list item or a question: people also use ``--`` between answers;
- a device or app line ("Sent from my iPhone", "Get Outlook for Android", "Von meinem iPhone
  gesendet", "Envoyé de mon iPhone", "Enviado desde mi iPhone", "Inviato da iPhone", "Sent
  with Airmail", ...) and the few short lines after it, when nothing but that follows.

What stays text: "--" inside a sentence, and the sign-off ("Thanks, Maria", "Best,\\nOwen",
"Un saludo,\\nMarta"): the partner typed it, it is the end of what they wrote, and sources of
expected reply text keep it.
"""

from __future__ import annotations

import re

from outreach.core.inbound.replytext.library import SENT_FROM, SIGN_OFFS

_SENT = (
    r"(?:Sent|Sendt|Skickat|Skickad(?:es)?|Verzonden|Verstuurd|Enviado|Enviada|Envoy[ée]|"
    r"Inviato|Gesendet|L[äa]hetetty|Wys[łl]ano|Odesl[áa]no)"
    r" (?:from|with|via|using|on the go from|fra|med|fr[åa]n|vanaf|vanuit|van|met|desde|con|"
    r"v[íi]a|de|do|da|dal|dalla|depuis|[àa] partir d[e']|von|mit|z|ze)\b"
)
_DEVICE = re.compile(
    rf"^\s*(?:{_SENT}|"
    r"(?:Diese Nachricht wurde )?von meinem\b.{1,60}\bgesendet|"
    r"(?:Get|Download|Obtenir|Obtener|Scarica|Obter(?: o)?|Hent|H[äa]mta|Skaffa|F[åa])\s+"
    r"(?:the\s+)?Outlook\b|"
    r"Outlook f[üu]r \w+ (?:beziehen|herunterladen)|Outlook voor \w+ downloaden|"
    rf"{SENT_FROM})",
    re.IGNORECASE,
)
_LINK = re.compile(r"<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]|https?://\S+")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|\(\d{1,2}\)|[-*•]\s|Q\d)", re.IGNORECASE)

_MORE_SIGN_OFFS = (  # a longer form before its start: "saludos cordiales" before "saludos"
    r"saludos cordiales|cordiales saludos|un cordial saludo|muy atentamente|"
    r"thanks|thank you|many thanks|cheers|best|best wishes|warm(?:est)? regards|kind regards|"
    r"regards|sincerely|yours|take care|talk soon|saludos|un saludo|un abrazo|abrazos|gracias|"
    r"muchas gracias|atentamente|cordialmente|cordialement|bien cordialement|bien [àa] vous|"
    r"amiti[ée]s|merci|bonne journ[ée]e|[àa] bient[ôo]t|gr[üu](?:ß|ss)e|gru(?:ß|ss)|mfg|lg|vg|"
    r"danke|cordiali saluti|saluti|un saluto|grazie|a presto|abra[çc]os?|atenciosamente|"
    r"obrigad[oa]|cumprimentos|groeten|groet|met vriendelijke groet|hartelijke groet|hilsen|"
    r"mvh|med vennlig hilsen|vennlig hilsen|takk|tak|v[äa]nliga h[äa]lsningar|h[äa]lsningar"
)
_SIGN_OFF = re.compile(rf"^\s*(?:{SIGN_OFFS}|(?:{_MORE_SIGN_OFFS})\b)", re.IGNORECASE)
_NAME = re.compile(r"^[-–—/~ ]*[A-ZÀ-ÖØ-Þ][\w'.-]*(?:[ ]+[A-ZÀ-ÖØ-Þ][\w'.-]*){0,2}[ ]*$")
#: a full name and a short title: "Grace Kim, CPA", "Dana Reyes, Owner"
_NAME_TITLE = re.compile(
    r"^[-–—/~ ]*(?P<name>[A-ZÀ-ÖØ-Þ][\w'.-]*(?:[ ]+[A-ZÀ-ÖØ-Þ][\w'.-]*){1,2}),[ ]*"
    r"(?:[A-ZÀ-ÖØ-Þ][\w.&/-]*[ ]*){1,4}$"
)
#: one-word answers that look like a name ("Yes", "Nada") but answer the question above
_ANSWER_WORDS = frozenset(
    {"yes", "no", "none", "nothing", "nope", "sure", "ok", "okay", "done", "maybe", "sí", "si",
     "oui", "non", "ja", "nein", "nee", "nej", "não", "sim", "nada", "rien", "nichts", "niente",
     "definitely", "absolutely", "certainly", "probably", "possibly", "perhaps", "indeed",
     "agreed", "exactly", "correct", "never", "always", "both", "all", "claro", "seguro",
     "quizás", "quizas", "tal vez", "nunca", "siempre", "todos", "ninguno", "ninguna",
     "desde luego", "por supuesto", "claro que sí", "claro que si", "bien sûr", "jamais",
     "peut-être", "toujours", "certamente", "talvez", "sempre"}
)  # fmt: skip


def is_device_line(line: str) -> bool:
    """'Sent from my iPhone', 'Get Outlook for iOS<https://aka.ms/o0ukef>', 'Sent from my
    Android device with K-9 Mail. Please excuse my brevity.'; not 'Sent from my desk, is
    much easier than my phone.' (a sentence goes on after the device)."""
    match = _DEVICE.match(line)
    if not match:
        return False
    rest = _LINK.sub(" ", line[match.end() :]).strip()
    device, _, after = rest.partition(". ")
    return (
        len(rest) <= 90
        and len(device.split()) <= 6
        and len(after.split()) <= 6
        and not rest.endswith(("?", ":"))
    )


def _fits(tail: list[str], lines: int, width: int) -> bool:
    return len(tail) <= lines and all(len(line.strip()) <= width for line in tail)


def signature_start(lines: list[str], quoted: list[bool]) -> int:
    """Index where the signature starts (``len(lines)`` when there is none).

    Only the partner's own lines (``quoted[i]`` False) are looked at, and a signature
    only ends the reply: it has no quoted text with more of their words below it."""
    own = [i for i, line in enumerate(lines) if line.strip() and not quoted[i]]
    if not own:
        return len(lines)
    last = own[-1]
    quote_before_last = max((i for i in range(last) if quoted[i]), default=-1)
    for index in own:
        if index <= quote_before_last:
            continue
        line = lines[index]
        tail = [lines[i].strip() for i in own if i > index]
        if line.strip() == "--":
            exact = line == "-- "  # RFC 3676 section 4.3: dash, dash, space, nothing else
            answers = any(_LIST_ITEM.match(t) or t.endswith("?") for t in tail)
            if exact and _fits(tail, 20, 200) and not answers:
                return index
            if tail and _fits(tail, 12, 100) and not answers:
                return index
        elif is_device_line(line) and _fits(tail, 6, 100):
            return index
    return len(lines)


_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hola|buenos d[íi]as|buenas|"
    r"estimad[oa]|bonjour|salut|cher|ch[èe]re|hallo|guten (?:tag|morgen)|liebe[rs]?|"
    r"sehr geehrte[rs]?|moin|servus|ciao|buongiorno|salve|gentile|caro|cara|ol[áa]|oi|"
    r"prezad[oa]|bom dia|boa tarde|hej|hei|hoi|beste|goedemorgen|god morgen)\b",
    re.IGNORECASE,
)


def is_greeting(lines: list[str]) -> bool:
    """Lines that only greet ("Hi,", "Hola Sam:", "Dear Ms Rivera,"): words above a quote
    that do not make the reply an inline one ("Hi Sam, answers below:" does)."""
    rows = [line.strip() for line in lines if line.strip()]
    match = _GREETING.match(rows[0]) if len(rows) == 1 else None
    if match is None:
        return False
    rest = rows[0][match.end() :].strip().rstrip(",:!.")
    return len(rest.split()) <= 3 and not any(mark in rest for mark in ",:;.!?")


def is_closing(lines: list[str]) -> bool:
    """Lines that only close a mail: a sign-off ("Thanks, Dana", "Best,\nOwen") or a name with
    a few contact lines ("Dana Reyes\nBrightWorks\n555 0101"). Below quoted text they do not
    answer it."""
    rows = [line.strip() for line in lines if line.strip()]
    if not rows or rows[0].lower().strip(" .!") in _ANSWER_WORDS:
        return False
    match = _SIGN_OFF.match(rows[0])
    if match:
        rest = rows[0][match.end() :].strip(" ,.!;:-")
        if rest and not _NAME.match(rest):
            return False  # "Thanks, we are fine": an answer that starts like a sign-off
        rows = rows[1:]
    elif not _NAME.match(rows[0]) and not _titled_name(rows[0]):
        return False
    return len(rows) <= 5 and all(_contact_line(row) for row in rows)


def _titled_name(row: str) -> bool:
    """A full name with a short title ("Grace Kim, CPA"), not an answer ("Yes, Definitely")."""
    match = _NAME_TITLE.match(row)
    return match is not None and not any(
        word.lower().strip(".") in _ANSWER_WORDS for word in match.group("name").split()
    )


def _contact_line(row: str) -> bool:
    """A name, title, company, phone number or address line (no sentence)."""
    words = row.split()
    if len(row) > 50 or len(words) > 6 or row.endswith(("?", "!", ":")):
        return False
    return not row.endswith(".") or len(words[-1]) <= 4  # "Acme Inc." but no sentence
