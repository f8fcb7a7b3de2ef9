"""Where quoted history starts: quote headers of mail clients in many languages.

Three shapes, each recognised on whole lines:

- attribution lines: "On Mon, 3 Mar 2016 at 17:21, Jane Doe <jane@example.org> wrote:",
  "Am 30.11.2026 um 08:02 schrieb ...:", "Jane <j@x> schrieb am Mo., 30. Nov. 2026:",
  "man. 30. nov. 2026 kl. 08:02 skrev ...:", Gmail's "2016-03-03 17:21 GMT+01:00 Name
  <addr>:", also wrapped over two or three lines;
- separator lines: "-----Original Message-----" and its translations, "*-------- Original
  Message --------*", "Begin forwarded message:", Outlook web's line of underscores;
- header blocks: "From:/Sent:/To:/Subject:" and their translations ("De :/Envoyé :/À :/Objet :",
  "Da:/Inviato:/A:/Oggetto:", "De:/Enviada em:/Para:/Assunto:", ...), also in markdown stars
  (``*From:*``), and a line of dashes or underscores just above one.

mail-parser-reply's own quote headers (more languages) are cut points too, except its loose
two-line "X: y" blocks, which answers such as "From: 1 March / To: 30 April" also match.
"""

from __future__ import annotations

import re

from outreach.core.inbound.bodytext import QUOTE_MARK
from outreach.core.inbound.replytext.library import (
    HEADER_FIELD_WORDS,
    HEADER_FROM_WORDS,
    quote_header_spans,
)

# Header-block field names: mail-parser-reply's (its languages' Outlook blocks), then ours for
# what it lacks (Portuguese, Norwegian, Finnish, Turkish, Russian; "Enviado el", "Envoyé le",
# "Enviada em"; the long names some clients use).
_FROM_WORDS = "|".join(
    [
        *HEADER_FROM_WORDS,
        r"Від|От|Из|Lähettäjä|Feladó|Kimden|Expéditeur|Remitente|Mittente|Absender|Afzender|"
        r"Avsändare|Avsender|Afsender|Remetente|寄件者|差出人",
    ]
)
_SUBJECT_WORDS = (
    r"Subject|Betreff|Objet|Sujet|Asunto|Assunto|Oggetto|Onderwerp|Ämne|Emne|Temat|Aihe|Konu|"
    r"Тема|主题|件名|제목"
)
_OTHER_WORDS = "|".join(
    [
        *HEADER_FIELD_WORDS,
        r"Bcc|Reply-To|Importance|Kopie|Envoyé le|Pour|Destinataire|Cci|Enviado el|Enviado em|"
        r"Enviada|Enviada em|Enviada el|CCO|Copia|Sendt|Til|Dato|Lähetetty|Vastaanottaja|"
        r"Gönderildi|Kime|Tarih|Отправлено|Кому|Дата|日期|送信日時|宛先",
    ]
)
_HEADER_LINE = re.compile(
    rf"^[ \t*]*(?:(?P<from>{_FROM_WORDS})|(?P<subject>{_SUBJECT_WORDS})|(?:{_OTHER_WORDS}))"
    r"[ \t*]*[:：]",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^[ \t*_]*(?:-{2,}\s*\*?\s*(?:Original Message|Urspr[üu]ngliche Nachricht|Message d'origine|"
    r"Mensaje original|Messaggio originale|Oorspronkelijk bericht|Ursprungligt meddelande|"
    r"Oprindelig meddelelse|Opprinnelig melding|Forwarded message|Reply message|"
    r"Antwort Nachricht|"
    r"Original-Nachricht|Weitergeleitete Nachricht|Mensaje reenviado|Message transf[ée]r[ée]|"
    r"Mail original|Message original|Mensagem original|Originalnachricht|Messaggio inoltrato|"
    r"Mensagem encaminhada|Mensagem reencaminhada|Alkuper[äa]inen viesti|Original message follows|"
    r"Doorgestuurd bericht|Videresendt (?:meddelelse|melding|besked)|Vidarebefordrat meddelande|"
    r"Wiadomo[śs][ćc] oryginalna|P[ůu]vodn[íi] zpr[áa]va|Исходное сообщение|"
    r"Orijinal Mesaj|[ÖO]zg[üu]n [İI]leti)\s*\*?\s*-{2,}|"
    r"_{20,}|"
    r"(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht|"
    r"D[ée]but du message r[ée]exp[ée]di[ée]|Inicio del mensaje reenviado|"
    r"Inizio messaggio inoltrato|In[íi]cio da mensagem reencaminhada|"
    r"Come[çc]o da mensagem encaminhada|Doorgestuurd bericht begint)\s*:|"
    # Zoho and some webmails: "---- On Mon, 30 Nov 2026 ... <a@b> wrote ----"
    r"-{2,} ?[^\n]{0,200}(?:wrote|schrieb|schreef|a [ée]crit|escribi[óo]|ha scritto|escreveu)"
    r" ?-{2,})[ \t*_]*$",
    re.IGNORECASE,
)
#: A line of dashes, underscores or equal signs (Outlook web, some webmails and phones put
#: one above the header block).
_RULE = re.compile(r"^[ \t*]*(?:-{5,}|_{5,}|={5,}|~{5,})[ \t*]*$")

_WROTE = (
    r"wrote|writes|has written|schrieb|schreibt|hat geschrieben|schreef|geschreven|verzond|skrev|"
    r"a scris|nap[íi]sal|rakst[īi]ja|đã viết|"
    r"kirjoitti|a\s+[ée]crit|[ée]crit|escribi[óo]|ha escrito|escribe|ha scritto|scrisse|"
    r"escreveu|napisa[łl]a?|napsal(?:\(a\))?|написал[а]?|yazd[ıi]|írta|kirjutas|raš[ėe]|pisze"
)
_WROTE_WORD = re.compile(rf"(?<!\w)(?:{_WROTE})(?!\w)", re.IGNORECASE)
_ENDS_WROTE = re.compile(rf"(?<!\w)(?:{_WROTE})\s*[:：]?\s*$", re.IGNORECASE)
_LEAD = re.compile(
    r"^(?:On|Am|Le|El|Il|Op|Den|Em|Dnia|W dniu|Dne|P[åa]|Quoting|Zitat von|Citando|Citazione)\b",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"@|<[^<>\s]+>|\bat [\w-]+\.[\w.-]+")
_TIME = re.compile(r"(?<!\d)\d{1,2}[:.h]\d{2}(?!\d)")
_DATE = re.compile(
    r"(?<!\d)(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|(?:19|20)\d{2})(?!\d)"
)
_DATE_THEN_ADDRESS = re.compile(
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}).*(?:@| at )[\w.-]+\.\w+"
)
_NOTES_BLOCK = re.compile(
    r"^[^\n]*@[^\n]*\n(?:[^\n]*\n){0,2}?[ \t]*\d{1,4}[./-]\d{1,2}[./-]\d{2,4}[^\n]*\n"
    r"(?:[ \t]*\n)?[ \t]*(?:To|An|À|A|Para|Aan)[ \t]*$",
    re.MULTILINE,
)
_LIST_FOOTER = re.compile(
    r"^(-{10,} ?next part ?-{10,}|_{20,}\s*$|-- ?$\n[^\n]*mailing list|"
    r"\S+(?: \S+){0,3} mailing list\s*$|An HTML attachment was scrubbed|-------------- next part)",
    re.MULTILINE | re.IGNORECASE,
)
_HEADER_LIKE = re.compile(r"^[\s>*]*[^\s:：]{1,25}(?: [^\s:：]{1,12})?\s*[:：]")


def is_quote(line: str) -> bool:
    """A line of quoted text ('>' quoting, or '|' that some old clients use)."""
    return line.lstrip().startswith(">") or line.startswith("|")


def quoted_lines(lines: list[str]) -> list[bool]:
    """Which lines are quoted text: '>' lines, and the tails of quoted lines a client wrapped
    without a '>' (lazy quoting, or a quoted-printable soft break left undecoded): a line
    right below an unfinished quoted line that starts in lower case or ends the word that
    an '=' broke off, with quoted text or nothing right below it."""
    quoted = [is_quote(line) for line in lines]
    for index in range(1, len(lines)):
        if quoted[index] and _OPEN_LINK.search(lines[index - 1]) and not quoted[index - 1]:
            quoted[index] = False  # the '>' closes a link wrapped from the line above
            continue
        line, above = lines[index], lines[index - 1].rstrip()
        if quoted[index] or not quoted[index - 1] or not line.strip():
            continue
        below = lines[index + 1] if index + 1 < len(lines) else ""
        if below.strip() and not is_quote(below):
            continue
        broken = above.endswith("=")
        unfinished = not above.endswith((".", "?", "!", ":", ";", ">")) and (
            line.lstrip()[:1].islower() or not line.lstrip()[:1].isalnum()
        )
        if (broken or unfinished) and len(line.strip()) < 60:
            quoted[index] = True
    return quoted


_OPEN_LINK = re.compile(r"<(?:https?|mailto):[^>\s]*$", re.IGNORECASE)
_BANNER = re.compile(
    r"outside|external|extern|externe|externo|esterno|au[ßs]erhalb|ext[ée]rieur|fuera|fora",
    re.IGNORECASE,
)
_BANNER_SUBJECT = re.compile(
    r"organi[sz]a|company|links|attachments|sender|Organisation|Absender|expéditeur|remitente|"
    r"pi[èe]ces jointes|Anh[äa]nge|adjuntos|allegati|anexos",
    re.IGNORECASE,
)


def banner_end(lines: list[str]) -> int:
    """First line after a mail gateway's warning banner at the top of the body ("CAUTION:
    This email originated from outside of the organization. Do not click links..."): the
    receiving side's gateway wrote it, not the partner. 0 when there is none."""
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    end = next((i for i in range(first, len(lines)) if not lines[i].strip()), len(lines))
    paragraph = " ".join(line.strip() for line in lines[first:end])
    if (
        end - first <= 4
        and len(paragraph) <= 400
        and _BANNER.search(paragraph)
        and _BANNER_SUBJECT.search(paragraph)
        and re.match(
            r"^\W*(?:\[?external|caution|warning|attention|achtung|notice|"
            r"precauci[óo]n|aten[çc][ãa]o|attenzione|this (?:e-?mail|message))",
            paragraph,
            re.IGNORECASE,
        )
    ):
        return end
    return 0


# --------------------------------------------------------------------------- attribution


def _attribution(text: str, quoted_next: bool) -> bool:
    """Is this (joined) text an attribution line? Without quoted text right below it only a
    clear one counts: a 'wrote' verb with a date, an address or a lead word ('On', 'Am', ...),
    or an address and a date ending in ':' (Gmail's "2016-03-03 17:21 GMT+01:00 Name <a@b>:")."""
    s = text.strip()
    if not s or len(s) > 300:
        return False
    colon = s.endswith((":", "："))
    if not (colon or _ENDS_WROTE.search(s)):
        # right above quoted text, a date then an address is one too, whatever the words
        # around them ("2009-10-07 ... list-request at lists.example.org ...", mangled CJK)
        return quoted_next and len(s) < 250 and _DATE_THEN_ADDRESS.search(s) is not None
    verb = _WROTE_WORD.search(s) is not None
    address = _ADDRESS.search(s) is not None
    when = _TIME.search(s) is not None or _DATE.search(s) is not None
    if verb and (address or when or _LEAD.match(s)):
        return True
    if colon and address and when:
        return True
    if not quoted_next:
        return False
    # right above quoted text: "Sam wrote:", "26.06.2014, 14:41, Bob:"
    return verb or (colon and len(s) < 200 and (address or _TIME.search(s) is not None))


def _next_nonblank_is_quote(lines: list[str], index: int) -> bool:
    for line in lines[index + 1 : index + 4]:
        if line.strip():
            return is_quote(line)
    return False


def attributions(lines: list[str], stop: int) -> list[tuple[int, int, bool]]:
    """(first line, last line, quoted text follows) of each attribution before ``stop``."""
    found: list[tuple[int, int, bool]] = []
    index = 0
    while index < stop:
        line = lines[index]
        if not line.strip() or is_quote(line) or len(line) > 300:
            index += 1
            continue
        span = None
        for size in (1, 2, 3):
            last = index + size - 1
            if last >= stop:
                break
            tail = lines[last]
            if not tail.strip() or is_quote(tail) or len(tail) > 300:
                break
            if size > 1 and lines[last - 1].rstrip().endswith((":", "：")):
                break
            stripped = tail.rstrip()
            if size > 1 and not (stripped.endswith((":", "：")) or _ENDS_WROTE.search(stripped)):
                continue
            first = lines[index].strip()
            if size > 1 and not (
                _LEAD.match(first) or _ADDRESS.search(first) or _DATE.search(first)
            ):
                break
            quoted_next = _next_nonblank_is_quote(lines, last)
            if _attribution(" ".join(lines[index : last + 1]), quoted_next):
                span = (index, last, quoted_next)
                break
        if span:
            found.append(span)
            index = span[1] + 1
        else:
            index += 1
    return found


# --------------------------------------------------------------------------- header blocks


def _header_block_at(lines: list[str], index: int) -> int | None:
    """Where the header block that has a header line at ``index`` starts, or None.

    A block is three or more header lines close together (a wrapped value may sit between
    them), one of them "From", so that an answer listing "From: 1 March / To: 30 April" is
    not taken for one."""
    count, has_from, gap = 0, False, 0
    for line in lines[index : index + 14]:
        match = _HEADER_LINE.match(line)
        if match:
            count += 1
            gap = 0
            has_from = has_from or match.group("from") is not None
        elif not line.strip():
            gap += 1
            if gap > 1:
                break
        else:
            gap += 1
            if gap > 2:
                break
    if count >= 3 and has_from:
        return index
    return None


def leading_block_end(lines: list[str]) -> int:
    """First line after a header block the body opens with (0 when it opens with none):
    some clients put the quoted message's headers first and the answer below them."""
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    end = first
    has_from = has_other = False
    while end < len(lines):
        match = _HEADER_LINE.match(lines[end])
        if not match:
            break
        has_from = has_from or match.group("from") is not None
        has_other = has_other or match.group("subject") is not None or "@" in lines[end]
        end += 1
    if end - first >= 2 and has_from and has_other:
        return end
    return 0


# --------------------------------------------------------------------------- the cut


def _library_cut(lines: list[str], start: int) -> int | None:
    for first, last, text in quote_header_spans(lines[start:]):
        index = start + first
        if index >= len(lines) or is_quote(lines[index]):
            continue
        if _next_nonblank_is_quote(lines, start + last):
            continue  # above '>' quoting: the quote logic keeps what the partner answered
        rows = text.split("\n")
        header_like = sum(1 for row in rows if _HEADER_LIKE.match(row))
        if _HEADER_LIKE.match(rows[0]) and header_like < 3 and "@" not in text:
            continue  # the library's loose "X: y / Z: w" block: answers look like that too
        return index
    return None


def history_start(lines: list[str], start: int = 0) -> int:
    """Index of the first line of unprefixed quoted history at or after ``start``
    (``len(lines)`` when there is none). A header at the very top (nothing written above
    it) is not a cut: the answer is below it."""
    seen_text = False
    candidates = [len(lines)]
    for index in range(start, len(lines)):
        line = lines[index]
        if line == QUOTE_MARK:  # an HTML client's quote container opens here
            if seen_text and not _answered_inside(lines, index):
                candidates.append(index)
                break
            continue
        if not line.strip():
            continue
        if is_quote(line):  # quoted lines are the quote logic's; they count as text above
            seen_text = True
            continue
        if seen_text and _SEPARATOR.match(line):
            candidates.append(index)
            break
        if seen_text and _HEADER_LINE.match(line) and _header_block_at(lines, index) is not None:
            candidates.append(_rule_above(lines, index, start))
            break
        seen_text = True
    stop = min(candidates)
    head = "\n".join(lines[start:stop])
    notes = _NOTES_BLOCK.search(head)
    if notes and head[: notes.start()].strip():
        stop = start + head.count("\n", 0, notes.start())
    library = _library_cut(lines[:stop], start)
    if library is not None and any(line.strip() for line in lines[start:library]):
        stop = library
    for first, _last, quoted_next in attributions(lines, stop):
        if not quoted_next and any(line.strip() for line in lines[start:first]):
            return first  # "On ... wrote:" above unquoted text: history
    return stop


def _answered_inside(lines: list[str], mark: int) -> bool:
    """True when the partner answered inside an HTML client's quote container (Gmail and
    Thunderbird put inline answers there): it opens with an attribution or quoted text, and
    words of theirs follow quoted text, with no header block or separator first."""
    following = [line for line in lines[mark + 1 :] if line.strip()]
    if not following or not (
        is_quote(following[0]) or _attribution(following[0], quoted_next=True)
    ):
        return False
    seen_quote = False
    for line in following[1:]:
        if line == QUOTE_MARK or _SEPARATOR.match(line) or _HEADER_LINE.match(line):
            return False
        if is_quote(line):
            seen_quote = True
        elif seen_quote:
            return True
    return False


def _rule_above(lines: list[str], index: int, start: int) -> int:
    """The line of dashes or underscores just above a header block, when there is one."""
    for above in range(index - 1, max(start, index - 3) - 1, -1):
        if _RULE.match(lines[above]):
            return above
        if lines[above].strip():
            break
    return index


def footer_start(lines: list[str]) -> int:
    """Index of a mailing list's footer (or an archive's "attachment scrubbed" note)."""
    text = "\n".join(lines)
    match = _LIST_FOOTER.search(text)
    return len(lines) if match is None else text.count("\n", 0, match.start())
