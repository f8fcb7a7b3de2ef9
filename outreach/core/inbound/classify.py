"""Classify one inbound message: pure, no I/O, never raises.

Order matters and follows how certain each signal is:

1. ARF complaint (RFC 5965 ``multipart/report; report-type=feedback-report``) -> unsubscribe
2. non-delivery report (RFC 3464 DSN, flufl.bounce detectors, heuristics)     -> bounce
3. sent to one of our unsubscribe addresses                                     -> unsubscribe
4. automatic reply (RFC 3834 ``Auto-Submitted``, vendor headers, subject, body) -> auto_reply
   (but a help-desk acknowledgement with a ticket number and no absence goes to 5)
5. other machine mail (ticket systems, no-reply notifications, receipts)        -> other
6. the new text (never the quoted footer) or the subject asks to stop           -> unsubscribe
7. anything else                                                                 -> reply

Any unexpected exception becomes kind ``error`` with the reason, so one bad message
never stops a batch.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.message import Message
from typing import Any

from outreach.core.inbound.autoreply import AutoReplyVerdict, find_return_date, judge_auto_reply
from outreach.core.inbound.bodytext import (
    body_text,
    fallback_text,
    has_plain_part,
    html_body_text,
    part_text,
    walk,
)
from outreach.core.inbound.bounces import BounceReport, analyse_bounce, original_message_ids
from outreach.core.inbound.mailparse import (
    TICKET_SYSTEM_HEADERS,
    MessageHeaders,
    headers_of,
    mime_not_parsed,
    parse_legacy,
    parse_message,
)
from outreach.core.inbound.replytext import ReplyText, new_words, split_reply
from outreach.core.model import InboundKind

KINDS = tuple(kind.value for kind in InboundKind)


@dataclass(frozen=True)
class Classification:
    """What an inbound message is, and what the caller needs to act on it."""

    kind: str
    reasons: tuple[str, ...] = ()
    bounced_recipients: tuple[str, ...] = ()
    hard: bool | None = None
    status: str | None = None
    diagnostic: str | None = None
    original_message_ids: tuple[str, ...] = ()
    return_date: date | None = None
    contact_change: bool = False
    text: str | None = None
    full_text: str | None = None
    headers: MessageHeaders = field(default_factory=MessageHeaders)
    #: an ARF complaint (RFC 5965): like a bounce, it acts only when it quotes our message
    complaint: bool = False
    #: what was cut from the end of ``text`` as signature ("-- " block, "Sent from my iPhone")
    signature: str | None = None

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        """JSON-ready dict (the shape ``outreach classify --json`` prints)."""
        return {
            "file": file,
            "kind": self.kind,
            "bounced_recipients": list(self.bounced_recipients),
            "hard": self.hard,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "text": self.text,
            "reasons": list(self.reasons),
            "status": self.status,
            "diagnostic": self.diagnostic,
            "contact_change": self.contact_change,
            "message_id": self.headers.message_id,
            "in_reply_to": self.headers.in_reply_to,
            "from": self.headers.from_addr,
            "subject": self.headers.subject,
            "signature": self.signature,
        }


def classify_message(
    raw: bytes,
    *,
    unsubscribe_addresses: Collection[str] = (),
    today: date | None = None,
) -> Classification:
    """Classify raw RFC 5322 bytes; never raises (failures give kind 'error')."""
    headers = MessageHeaders()
    try:
        msg = parse_message(raw)
        headers = headers_of(msg)
        unread = mime_not_parsed(msg)
        if unread is not None:  # the headers still say whom it concerns; keep the words
            return Classification(
                kind="error", reasons=(unread,), headers=headers, full_text=_salvaged_text(raw)
            )
        return _classify(msg, raw, headers, unsubscribe_addresses, today)
    except Exception as exc:  # noqa: BLE001 - the batch must go on; record why
        return Classification(
            kind="error",
            reasons=(f"classifier failed: {type(exc).__name__}: {exc}"[:300],),
            headers=headers,
            full_text=_salvaged_text(raw),
        )


def _salvaged_text(raw: bytes) -> str | None:
    try:
        return fallback_text(raw) or None
    except Exception:  # noqa: BLE001 - never raise
        return None


def _classify(
    msg: Message,
    raw: bytes,
    headers: MessageHeaders,
    unsubscribe_addresses: Collection[str],
    today: date | None,
) -> Classification:
    full_text = body_text(msg)
    if _is_arf(headers):
        return Classification(
            kind="unsubscribe",
            reasons=("ARF feedback report (RFC 5965): recipient marked the mail as spam",),
            bounced_recipients=complaint_recipients(msg),
            original_message_ids=original_message_ids(msg, headers, full_text),
            full_text=full_text,
            headers=headers,
            complaint=True,
        )
    bounce = analyse_bounce(msg, parse_legacy(raw), headers, full_text)
    if bounce is not None:
        return _bounce_result(bounce, full_text, headers)
    wanted = {a.strip().lower() for a in unsubscribe_addresses if a.strip()}
    hit = sorted(wanted.intersection(headers.to_addrs))
    if hit:
        return Classification(
            kind="unsubscribe",
            reasons=(f"sent to unsubscribe address {hit[0]}",),
            full_text=full_text,
            headers=headers,
        )
    reply = _new_text(msg, full_text)
    verdict = judge_auto_reply(headers, full_text, quotes_history=_quotes_history(full_text, reply))
    if verdict.is_auto_reply and not _ticket_acknowledgement(headers, full_text, verdict):
        return _auto_reply_result(verdict, headers, full_text, reply, today)
    other = _other_reasons(headers, full_text, verdict)
    if other:
        return Classification(
            kind="other", reasons=tuple(other), full_text=full_text, headers=headers
        )
    # quoted questions kept above inline answers are ours: only the partner's words count
    unsubscribe = unsubscribe_reasons(headers, new_words(reply.text))
    kind = "unsubscribe" if unsubscribe else "reply"
    reasons = unsubscribe or ["human reply: no bounce, automatic or unsubscribe signs"]
    return Classification(
        kind=kind,
        reasons=tuple(reasons),
        text=reply.text,
        full_text=full_text,
        headers=headers,
        signature=reply.signature,
    )


def _quotes_history(full_text: str, reply: ReplyText) -> bool:
    """True when the body carries quoted history besides the new text and signature (people
    quote; vacation responders rarely do)."""
    own = len(" ".join(new_words(reply.text).split())) + len(" ".join(reply.signature.split()))
    return len(" ".join(full_text.split())) > own + 80


def _new_text(msg: Message, full_text: str) -> ReplyText:
    """New text and signature of a reply; HTML-only mail uses the HTML with quote
    containers marked."""
    source = full_text
    if not has_plain_part(msg):
        source = html_body_text(msg) or full_text
    return split_reply(source)


def _is_arf(headers: MessageHeaders) -> bool:
    return headers.content_type == "multipart/report" and headers.report_type == ("feedback-report")


_ADDRESS = re.compile(r"[A-Za-z0-9._%+=#/!'&*-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def complaint_recipients(msg: Message) -> tuple[str, ...]:
    """Whom a complaint is about: its Original-Rcpt-To fields (RFC 5965 3.2), else the To
    of the message it returns."""
    found: dict[str, None] = {}
    returned: list[str] = []
    for part in walk(msg):
        try:
            ctype = part.get_content_type()
            payload = part.get_payload()
        except Exception:  # noqa: BLE001
            continue
        inner = payload[0] if isinstance(payload, list) and payload else None
        if ctype == "message/feedback-report":
            text = str(inner) if isinstance(inner, Message) else part_text(part)
            for line in re.findall(r"^original-rcpt-to:(.*)$", text, re.I | re.M):
                found.update(dict.fromkeys(a.lower() for a in _ADDRESS.findall(line)))
        elif ctype == "message/rfc822" and isinstance(inner, Message):
            returned += [a.lower() for a in _ADDRESS.findall(str(inner.get("to", "")))]
        elif ctype == "text/rfc822-headers":
            for line in re.findall(r"^to:(.*)$", part_text(part), re.I | re.M):
                returned += [a.lower() for a in _ADDRESS.findall(line)]
    return tuple(found) or tuple(dict.fromkeys(returned))


def _bounce_result(bounce: BounceReport, full_text: str, headers: MessageHeaders) -> Classification:
    return Classification(
        kind="bounce",
        reasons=bounce.reasons,
        bounced_recipients=bounce.recipients,
        hard=bounce.hard,
        status=bounce.status,
        diagnostic=bounce.diagnostic,
        original_message_ids=bounce.original_message_ids,
        full_text=full_text,
        headers=headers,
    )


def _auto_reply_result(
    verdict: AutoReplyVerdict,
    headers: MessageHeaders,
    full_text: str,
    reply: ReplyText,
    today: date | None,
) -> Classification:
    reference = _reference_day(headers, today)
    new_text = reply.text
    text_for_date = f"{headers.subject}\n{new_text or full_text}"
    # "my last day at X was 27 November" is no return: people who left do not come back
    return_date = None if verdict.contact_change else _return_date(text_for_date, reference)
    reasons = verdict.reasons
    if (
        return_date is not None
        and reference is not None
        and (return_date.toordinal() - reference.toordinal() > MAX_ABSENCE.days)
    ):
        reasons += (
            f"return date {return_date.isoformat()} is more than "
            f"{MAX_ABSENCE.days} days away: not believed, the usual pause applies",
        )
        return_date = None
    return Classification(
        kind="auto_reply",
        reasons=reasons,
        return_date=return_date,
        contact_change=verdict.contact_change,
        original_message_ids=tuple(
            dict.fromkeys(i for i in (headers.in_reply_to, *headers.references) if i)
        ),
        text=new_text or None,
        full_text=full_text,
        headers=headers,
        signature=reply.signature or None,
    )


#: An out-of-office longer than this is not believed: a Date or a text that says "back in
#: 9999" must not pause a partner's follow-ups for ever.
MAX_ABSENCE = timedelta(days=400)


def _reference_day(headers: MessageHeaders, today: date | None) -> date | None:
    """The day an auto-reply's "until Monday" counts from: its Date, unless that is after
    `today` (a sender's clock or a forged Date from the future), else `today`."""
    if headers.date is None:
        return today
    sent = headers.date.date()
    return sent if today is None or sent <= today + timedelta(days=1) else today


def _return_date(text: str, reference: date | None) -> date | None:
    try:
        return find_return_date(text, reference)
    except (OverflowError, ValueError):  # a date at the end of the calendar: none
        return None


# --------------------------------------------------------------------------- other

_NOREPLY = re.compile(
    r"^(no-?reply|do-?not-?reply|donotreply|noreply|notifications?|notify|alerts?|"
    r"automailer|mailer|system|support-?noreply|ticket(s|ing)?|helpdesk|servicedesk)"
    r"([+._-].*)?@",
    re.IGNORECASE,
)
_TICKET_HEADERS = (*TICKET_SYSTEM_HEADERS, "x-autogenerated", "x-auto-generated")
_TICKET_SUBJECT = re.compile(
    r"\[(ticket|case|request|incident)?\s*#?\s*[A-Z]*-?\d{3,}\]|\b(INC|REQ|RITM|CS|SR)\d{5,}\b|"
    r"\bticket\s*#?\s*\d+|has been (resolved|closed|created|updated|received)|"
    r"(request|case|ticket) (received|created|#)|##\d{3,}##|"
    r"\b(request|ticket|case|incident) ?(id|number|no\.?|nr\.?)\s*:?\s*#*\s*\d{3,}",
    re.IGNORECASE,
)
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|antw|r)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_NO_REPLY_TEXT = re.compile(
    r"(please )?do not reply (to this (e-?mail|message))|this (is an )?automated "
    r"(notification|message)|this mailbox is not monitored|no-?reply",
    re.IGNORECASE,
)


_ABSENCE = re.compile(
    r"out of (the )?office|vacation|holiday|leave|away|absent|abwesen|urlaub|ausente|fuera de|"
    r"cong[ée]|vacances|vacaciones|ferie|afwezig|no longer|nicht mehr|ya no|ne fait plus",
    re.IGNORECASE,
)


def _ticket_acknowledgement(
    headers: MessageHeaders, full_text: str, verdict: AutoReplyVerdict
) -> bool:
    """A help-desk "we received your request #123" is machine mail ('other'), not a
    person's auto-reply, unless it speaks of someone's absence or departure."""
    ticket = _TICKET_SUBJECT.search(headers.subject) or any(
        headers.get(name) for name in TICKET_SYSTEM_HEADERS
    )
    return bool(ticket) and not verdict.contact_change and not _ABSENCE.search(full_text[:3000])


def _other_reasons(headers: MessageHeaders, full_text: str, verdict: AutoReplyVerdict) -> list[str]:
    """Reasons the message is machine mail that is neither bounce nor auto-reply."""
    reasons: list[str] = []
    auto = (headers.auto_submitted or "").strip().lower()
    if auto and not auto.startswith("no"):
        reasons.append(f"header Auto-Submitted: {auto} (RFC 3834), not a personal reply")
    for name in _TICKET_HEADERS:
        if headers.get(name):
            reasons.append(f"header {name} (ticket/notification system)")
    if headers.report_type in ("disposition-notification", "delivery-status"):
        reasons.append(f"report {headers.report_type} (receipt, not a failure)")
    noreply = bool(_NOREPLY.match(headers.from_addr or ""))
    if noreply and (
        _TICKET_SUBJECT.search(headers.subject)
        or _NO_REPLY_TEXT.search(full_text[:5000])
        or (headers.get("precedence") or "").lower() in ("bulk", "junk", "list")
        or headers.get("list-unsubscribe")
    ):
        reasons.append(f"sender {headers.from_addr} is a no-reply/notification address")
    if (
        not reasons
        and _TICKET_SUBJECT.search(headers.subject)
        and (_NO_REPLY_TEXT.search(full_text[:5000]) or verdict.automatic)
    ):
        reasons.append(f"subject {headers.subject[:60]!r} is a ticket notification")
    return reasons


# --------------------------------------------------------------------------- unsubscribe

_UNSUB_TEXT = re.compile(
    r"\bunsubscribe\b|\bunsuscribe\b|remove (me|us|my (e-?mail|address|name))\b|"
    r"take (me|us|my (e-?mail|address|name)) off|(stop|quit|cease) (e-?mailing|emailing|"
    r"sending|contacting|mailing)|"
    # "don't send the paperwork yet" is an answer: only "don't email/contact ME/US" asks to stop
    r"(do not|don'?t|never) (e-?mail|contact|message|write( to)?|send) (me|us)\b|"
    r"(do not|don'?t) send (any )?(more|further) |remove (our|this) (e-?mail|address)|"
    r"remove (me |us )?from (the |your |this |our )?(mailing |e-?mail |distribution |contact )?"
    r"(list|database)|"
    r"opt(ing)? (me )?out|no more e-?mails|not interested in (receiving|further)|"
    r"no longer (wish|want) to (receive|be contacted|hear)|delete (me|my (e-?mail|address))|"
    # Spanish
    r"(dar|den|d[ée])(me|nos)? de baja|doy de baja|b[óo]rr(en|ar)(me|nos)|"
    r"elim[ií]n(en|ar)(me|nos)|"
    r"no (me )?(env[ií]en|manden|escriban|contacten)|dejen de (enviar|escribir)|"
    r"quitar(me)? de (la|su) lista|sacar(me)? de (la|su) lista|"
    # German
    r"abmelden|austragen|abbestellen|keine (weiteren )?(e-?mails|nachrichten|mails)|"
    r"nicht mehr (kontaktieren|anschreiben|schreiben)|aus (ihrem|dem) verteiler|"
    r"l[öo]schen sie (mich|uns)|melden sie (mich|uns)\b[^.\n]{0,40}\bab\b|"
    r"(mich|uns) (aus|von) (ihrem|ihrer|dem|der) (verteiler|liste|mailingliste|newsletter)|"
    # French
    r"d[ée]sabonn|d[ée]sinscri|retirez(-| )moi|supprimez(-| )moi|"
    r"ne plus (recevoir|me contacter)|arr[êe]tez de m'?(envoyer|[ée]crire|contacter)|"
    r"ne m'?(envoyez|[ée]crivez|contactez) plus|"
    r"ne (souhaite|veux|d[ée]sire|souhaitons|voulons) plus (recevoir|[êe]tre contact)|"
    # Italian, Portuguese, Dutch
    r"cancellatemi|cancellami|rimuovetemi|disiscriv|non (voglio|desidero) pi[ùu] ricevere|"
    r"descadastr|n[ãa]o (quero|desejo) (mais )?receber|afmelden|uitschrijven|"
    r"verwijder (mij|me|ons)",
    re.IGNORECASE,
)
_UNSUB_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|sv|r|fw|fwd|wg|tr|rv)\s*:\s*)*(?:\[[^\]]*\]\s*)*"
    r"(?:(?:please|pls|help\s*:?)\s*)?.{0,30}?"
    r"(unsubscribe|unsuscribe|remove me|opt[- ]?out|stop|abmelden|d[ée]sabonnement|"
    r"d[ée]sinscription|darme de baja|baja)\b",
    re.IGNORECASE,
)


#: A reply whose only words are a command: "Remove", "STOP", "Baja."
_BARE_COMMAND = re.compile(
    r"^\W*(unsubscribe|unsub|remove|stop|opt[- ]?out|baja|abmelden|d[ée]sabonner|"
    r"d[ée]sinscrire|cancel)\W*$",
    re.IGNORECASE,
)


def unsubscribe_reasons(headers: MessageHeaders, new_text: str) -> list[str]:
    """Why a human message asks to stop receiving mail (empty list when it does not).

    Only the new text counts: a quoted footer ("click here to unsubscribe") of our own
    mail must not turn a normal answer into an unsubscribe request.
    """
    head = new_text[:1500]
    for match in _UNSUB_TEXT.finditer(head):
        if not _mentions_only_in_passing(head, match):
            return [f"new text asks to stop: {match.group(0)!r}"]
    lines = [line for line in new_text.splitlines() if line.strip()]
    if lines and len(new_text) < 200 and _BARE_COMMAND.match(lines[0]):
        return [f"new text is the single command {lines[0].strip()!r}"]
    subject = headers.subject
    if _UNSUB_SUBJECT.match(subject):
        is_answer = bool(headers.in_reply_to) and bool(_substantive(new_text))
        if not is_answer:
            return [f"subject {subject[:60]!r} asks to unsubscribe"]
    return []


_DEVICE_SIGNATURE = re.compile(
    r"^\s*(sent from my \w+|sent from (yahoo|outlook|mail) |get outlook for|"
    r"envoy[ée] de mon|enviado desde mi|von meinem \w+ gesendet|inviato da)",
    re.IGNORECASE,
)


def _substantive(text: str) -> str:
    """Text minus device signatures ("Sent from my iPhone"), to tell 'Done.' from a body
    that says nothing."""
    return "\n".join(
        line for line in text.splitlines() if not _DEVICE_SIGNATURE.match(line)
    ).strip()


#: Words before "unsubscribe" that make it an instruction from a (quoted) footer:
#: 'To stop receiving these check-ins, reply with "unsubscribe"', "click here to unsubscribe".
_INSTRUCTION = re.compile(
    r"(reply(ing)? with|respond with|click( here)?( to)?|here to|link to|you (can|may)|"
    r"to stop receiving[^.\n]*|if you (would like|wish|want) to|write|send)\W{0,3}$",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"(no need to|(do not|don'?t|doesn'?t|not) (want|need|wish|mean|plan) to|please (do not|don'?t)"
    r"|not (going )?to|never|rather not|instead of)\s+(\w+\s+)?$",
    re.IGNORECASE,
)


def _mentions_only_in_passing(text: str, match: re.Match[str]) -> bool:
    """'How do I unsubscribe colleagues?' style mentions are rare; treat as requests,
    except inside a URL, when negated ("no need to unsubscribe us"), when it is a footer's
    instruction, or when it is about one conversation ("remove me from the cc")."""
    start = max(0, match.start() - 30)
    before = text[start : match.start()]
    context = text[start : match.end() + 5]
    return (
        bool(re.search(r"https?://\S*$", before))
        or "unsubscribe=" in context.lower()
        or bool(_NEGATED.search(before))
        or bool(_INSTRUCTION.search(before))
        or bool(_NOT_THE_LIST.match(text[match.end() : match.end() + 30]))
    )


#: "remove me from the cc" / "take me off this thread" asks about one conversation, not the list
_NOT_THE_LIST = re.compile(
    r"\s*(from|off)\s+(the\s+|this\s+)?(cc|copy|thread|chain|conversation|email chain)\b",
    re.IGNORECASE,
)
