"""Bounce (non-delivery report) detection: pure, no I/O.

Three layers, most authoritative first:

1. RFC 3464 delivery reports (``message/delivery-status``), parsed per recipient; the same
   field parser also reads DSN fields that broken MTAs paste into a text part.
2. flufl.bounce's MTA-specific detectors (Exim, qmail, Yahoo, Exchange, ...), run one by
   one so a crashing detector cannot hide the others.
3. Our own heuristics: ``X-Failed-Recipients`` (Exim), SMTP replies and enhanced status
   codes in the body ("550 5.1.1", "user unknown", "mailbox full").

Hard vs soft follows the status class (RFC 3463): 5.x.x is permanent, 4.x.x transient, even
when the DSN says ``Action: failed``; ``Action: delayed`` is always soft.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce._detectors import (
    aol,
    caiwireless,
    exchange,
    exim,
    groupwise,
    llnl,
    microsoft,
    netscape,
    postfix,
    qmail,
    simplematch,
    simplewarning,
    sina,
    smtp32,
    yahoo,
    yale,
)

from outreach.core.inbound.bodytext import body_text, part_text, walk
from outreach.core.inbound.mailparse import MessageHeaders, header_str, parse_msgids


@dataclass(frozen=True)
class RecipientFailure:
    """One recipient block of a delivery report."""

    address: str
    action: str | None
    status: str | None
    diagnostic: str | None
    hard: bool | None


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says: who failed, how permanently, and which of our messages."""

    recipients: tuple[str, ...]
    hard: bool | None
    status: str | None
    diagnostic: str | None
    reasons: tuple[str, ...]
    original_message_ids: tuple[str, ...]


# --------------------------------------------------------------------------- signals

_DAEMON_LOCALPARTS = re.compile(
    r"^(mailer-daemon|mailer_daemon|mailerdaemon|mail-daemon|maildaemon|postmaster|mdaemon|"
    r"mail\.delivery\.system|mail-delivery-system|mailadmin|mail-admin|bounce|bounces|"
    r"nobody|mail\.administrator|administrator|sysadmin|mailmaster|smtp|"
    r"symantec_antivirus_for_smtp_gateways|imss|mailsweeper|majordomo|"
    # Exchange's system mailbox: MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@
    r"microsoftexchange[0-9a-f]{32})(?:[+=].*)?$",
    re.IGNORECASE,
)
_DAEMON_NAMES = re.compile(
    r"mail delivery (sub)?system|mail delivery service|mailer[- ]daemon|postmaster|"
    r"mail administrator|system administrator|lsmtp|delivery subsystem|mail system|"
    r"automated response",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not delivered|non[- ]?deliver|delivery (status notification|"
    r"failure|failed|problem|notification|report)|returned mail|return(ed)? to sender|"
    r"failure notice|failure delivery|mail delivery (failed|failure|warning|problem)|"
    r"could not be delivered|delivery has failed|mail system error|failed mail|"
    r"permanent (delivery )?failure|message status|nicht zustellbar|unzustellbar|"
    r"non remis|non distribu|no se (pudo|puede) entregar|devuelto|"
    r"warning: message .* delayed|delayed mail|delivery delay|mail could not|"
    r"message not delivered|delivery notification|processing error|nameserver error|"
    r"rejected|unable to deliver|utilisateur non|delivery status|mail failed|"
    r"returning to sender|delivery warning|could not send message|"
    r"message (you sent )?(was )?blocked|delivery delayed|delivery (has )?failed|"
    r"unzustellbar|non distribuable|no se puede entregar|non recapitabile|"
    r"impossibile recapitare|n[ãa]o (foi )?entregue|onbestelbaar|kan niet worden bezorgd",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|undeliverable|"
    r"delivery (to the following recipients? )?(has )?failed|permanent fatal errors?|"
    r"delivery has failed|unable to deliver|message (was|has been) (rejected|returned|"
    r"blocked)|returned to (the )?sender|this is the mail system at host|"
    r"i'?m sorry to (have to )?inform you|hi\. this is the qmail-send program|"
    r"following (address|recipient)(es|s|\(s\))? (failed|had permanent)|"
    r"delivery to the following recipient|not yet been delivered|"
    r"(user|mailbox|recipient|address) (unknown|not found|unavailable|does not exist)|"
    r"no such (user|mailbox|recipient|address)|delivery status notification|"
    r"message could not|has been delayed|will be retried|retry time not reached|"
    r"mail delivery failed|non-delivery|nicht zugestellt|awaits moderator approval|"
    r"host not found|domain (not found|does not exist)|quota exceeded|mailbox (is )?full|"
    r"could not deliver|has been postponed|failed recipient|not a valid (user|recipient|"
    r"address|mailbox)|full mailbox|(permanent|temporary) (error|failure)|"
    r"(has|have) not (yet )?been delivered|still undelivered|deferred:|"
    r"(was|were|been) (blocked|rejected)|delivery (is )?delayed to|"
    # other languages (Exchange/Microsoft 365 and common MTAs translate their notices)
    r"konnte nicht zugestellt werden|nicht zugestellt werden|"
    r"impossible de remettre|n'a pas pu [êe]tre (remis|distribu)|"
    r"no se (pudo|puede) entregar|no se ha podido entregar|"
    r"impossibile recapitare|non (è|e') stato possibile recapitare|"
    r"n[ãa]o (foi|[ée]) poss[íi]vel entregar|kan niet worden bezorgd|kon niet worden bezorgd",
    re.IGNORECASE,
)

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|fwd?|wg|tr|rv)\s*(\[\d+\])?\s*:", re.IGNORECASE)

_FLUFL_DETECTORS = (
    exim.Exim,
    sina.Sina,
    yahoo.Yahoo,
    yale.Yale,
    smtp32.SMTP32,
    postfix.Postfix,
    qmail.Qmail,
    groupwise.GroupWise,
    microsoft.Microsoft,
    caiwireless.Caiwireless,
    exchange.Exchange,
    netscape.Netscape,
    aol.AOL,
    simplematch.SimpleMatch,
    simplewarning.SimpleWarning,
    llnl.LLNL,
)

_ADDRESS_RE = re.compile(r"[A-Za-z0-9._%+=#/!'&*-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ENHANCED_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_REPLY_RE = re.compile(r"(?<![\d.#-])([45][0-5]\d)(?:[ -]|$)(?!\d)", re.MULTILINE)
_SOFT_PHRASES = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (the )?(storage|quota)|"
    r"insufficient (system )?storage|temporar(y|ily)|try again later|will be retried|"
    r"has been delayed|delivery delay|not yet been delivered|still trying|"
    r"retry time not reached|greylist|deferred|no action is required",
    re.IGNORECASE,
)
_DELAY_PHRASES = re.compile(
    r"will be retried|still trying|has been delayed|not yet been delivered|"
    r"will continue to (try|attempt)|no action is required|retry time not reached",
    re.IGNORECASE,
)
_HARD_PHRASES = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address|domain)|"
    r"does not exist|doesn'?t exist|not exist|invalid (recipient|address|mailbox)|"
    r"(recipient|address|mailbox|user) (not found|unknown|unavailable|rejected)|"
    r"account (has been )?(disabled|deactivated|closed|suspended)|host (not found|unknown)|"
    r"domain (not found|does not exist)|permanent(ly)? (error|failure|fatal)|"
    r"not a valid|unrouteable|unroutable|relay(ing)? (denied|not permitted)|"
    r"rejected|refused|blocked|blacklist|spam|not accepted|unknown (local|recipient)",
    re.IGNORECASE,
)


def bounce_signals(headers: MessageHeaders, msg: Message, text: str) -> list[str]:
    """Human-readable reasons suggesting the message is a non-delivery report."""
    signals = _header_signals(headers, msg)
    if _BOUNCE_BODY.search(text[:20000]):
        signals.append("body describes a delivery failure")
    if _has_returned_message(msg):
        signals.append("returns the original message")
    return signals


def _header_signals(headers: MessageHeaders, msg: Message) -> list[str]:
    """The sender and subject signals of `bounce_signals` (cheap: no body text)."""
    signals: list[str] = []
    local = (headers.from_addr or "").split("@", 1)[0].strip('"\\')
    raw_from = header_str(msg, "from")
    if (
        _DAEMON_LOCALPARTS.match(local)
        or _DAEMON_NAMES.search(raw_from)
        or raw_from.strip() in ("", "<>")
    ):
        signals.append(f"sender {headers.from_addr or headers.from_name} is a mail system")
    if _BOUNCE_SUBJECT.search(headers.subject):
        signals.append(f"subject {headers.subject[:60]!r} reads like a delivery failure")
    return signals


_DSN_FIELD_LINE = re.compile(r"^\s*(Final|Original)-Recipient:", re.I | re.M)


def _has_returned_message(msg: Message) -> bool:
    return any(
        part.get_content_type() in ("message/rfc822", "text/rfc822-headers") for part in walk(msg)
    )


# --------------------------------------------------------------------------- RFC 3464


def _status_hard(status: str | None) -> bool | None:
    if not status:
        return None
    if status.startswith("5"):
        return True
    if status.startswith("4"):
        return False
    return None


def _clean_recipient(value: str, *, xtext: bool = False) -> str | None:
    """'rfc822; <a@b>' -> 'a@b'; None when it is not a usable address.

    The address is taken as the MTA wrote it, even with a domain no mail could reach
    ("dana@brightworks", "a@#example.net": a roster typo is exactly what bounces), in any
    script (RFC 6533 "utf-8;" addresses); a source route ("@relay:a@b") is dropped, and an
    Original-Recipient, which repeats the ORCPT parameter, is xtext-decoded ("a+2Bnews@b" is
    "a+news@b", RFC 3461 section 4)."""
    text = value.split(";", 1)[1] if ";" in value else value
    text = text.strip().strip("<>").strip().strip('"').strip()
    text = _SOURCE_ROUTE.sub("", text)
    if xtext:
        text = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), text)
    if _DSN_ADDRESS.match(text):
        return text.strip(".").lower()
    found = _ADDRESS_RE.search(text)
    if found:
        return found.group(0).strip(".").lower()
    return None


_DSN_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]*[^\s@<>()\[\],;:\".]$")
_SOURCE_ROUTE = re.compile(r"^@[^:\s]+(?:,@[^:\s]+)*:")
_XTEXT = re.compile(r"\+([0-9A-F]{2})")


def _smtp_hard(diagnostic: str | None) -> bool | None:
    if not diagnostic:
        return None
    enhanced = _ENHANCED_STATUS_RE.search(diagnostic)
    if enhanced:
        return enhanced.group(1) == "5"
    reply = _SMTP_REPLY_RE.search(diagnostic)
    if reply:
        return reply.group(1).startswith("5")
    return None


_RECIPIENT_KEYS = frozenset({"final-recipient", "original-recipient", "x-actual-recipient"})
_DSN_KEYS = _RECIPIENT_KEYS | {"action", "status", "diagnostic-code"}


def parse_dsn_fields(text: str) -> list[RecipientFailure]:
    """Parse per-recipient DSN field groups (RFC 3464 section 2.3) out of text.

    Works on a real ``message/delivery-status`` body and on DSN fields pasted into a
    text part. Only failed or delayed recipients are returned.
    """
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key = ""
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        if not raw_line.strip():
            if _RECIPIENT_KEYS & current.keys():
                groups.append(current)
                current = {}
            last_key = ""
            continue
        if raw_line[:1] in (" ", "\t") and last_key:
            current[last_key] += " " + raw_line.strip()
            continue
        key, sep, value = raw_line.partition(":")
        key = key.strip().lower()
        last_key = ""
        if not sep or key not in _DSN_KEYS:
            continue
        if key in _RECIPIENT_KEYS and key in current:
            groups.append(current)
            current = {}
        current.setdefault(key, value.strip())
        last_key = key
    if _RECIPIENT_KEYS & current.keys():
        groups.append(current)
    return [r for r in (_recipient_from_group(g) for g in groups) if r is not None]


def _recipient_from_group(group: dict[str, str]) -> RecipientFailure | None:
    address = None
    # Original-Recipient is the address as we sent it (RFC 3464 2.3.1): match on that
    for key in ("original-recipient", "final-recipient", "x-actual-recipient"):
        if key in group:
            address = _clean_recipient(group[key], xtext=key == "original-recipient")
            if address:
                break
    if not address:
        return None
    action = group.get("action", "").split()[0].lower().strip(";") if group.get("action") else None
    status_match = _ENHANCED_STATUS_RE.search(group.get("status", ""))
    status = ".".join(status_match.groups()) if status_match else None
    diagnostic = group.get("diagnostic-code") or None
    if diagnostic and ";" in diagnostic[:20]:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    if action in ("delivered", "relayed", "expanded"):
        return None
    if action is None and status and status.startswith("2"):
        return None
    hard = _status_hard(status)
    if hard is None:
        hard = _smtp_hard(diagnostic)
    if action and action.startswith("delayed"):
        hard = False
    elif hard is None and action and action.startswith(("fail", "error")):
        hard = True
    return RecipientFailure(address, action, status, diagnostic, hard)


def _delivery_status_texts(msg: Message) -> list[str]:
    """Raw text of every message/delivery-status part (payload may be parsed blocks)."""
    texts: list[str] = []
    for part in walk(msg):
        try:
            ctype = part.get_content_type()
        except Exception:  # noqa: BLE001
            continue
        if ctype not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        try:
            payload = part.get_payload()
        except Exception:  # noqa: BLE001
            continue
        if isinstance(payload, list):
            blocks = []
            for block in payload:
                if not isinstance(block, Message):
                    continue
                with contextlib.suppress(Exception):
                    blocks.append("\n".join(f"{k}: {v}" for k, v in block.items()))
            texts.append("\n\n".join(blocks))
        else:
            texts.append(part_text(part))
    return texts


# --------------------------------------------------------------------------- report


def original_message_ids(msg: Message, headers: MessageHeaders, text: str) -> tuple[str, ...]:
    """Message-IDs of the message that bounced, so the caller can match what we sent."""
    ids: dict[str, None] = {}
    for part in walk(msg):
        try:
            ctype = part.get_content_type()
        except Exception:  # noqa: BLE001
            continue
        # message/rfc822-headers: a common misspelling of text/rfc822-headers (RFC 6522)
        if ctype in ("message/rfc822", "message/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                for one in parse_msgids(header_str(inner, "message-id")):
                    ids.setdefault(one, None)
        elif ctype == "text/rfc822-headers":
            _scan_msgid_lines(part_text(part), ids)
    for dsn_text in _delivery_status_texts(msg):  # MTAs that paste the headers in the report
        _scan_msgid_lines(dsn_text, ids)
    # a bounce's own Message-ID is not what bounced, unless the returned message has it too
    # (Lotus Domino reuses the original's)
    returned = set(ids)
    _scan_msgid_lines(text, ids)
    for ref in (headers.in_reply_to, *headers.references):
        if ref:
            ids.setdefault(ref, None)
    if headers.message_id not in returned:
        ids.pop(headers.message_id or "", None)
    return tuple(ids)


def _scan_msgid_lines(text: str, ids: dict[str, None]) -> None:
    for match in re.finditer(r"^[ >]*Message-ID:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE):
        for one in parse_msgids(match.group(1)):
            ids.setdefault(one, None)


def _flufl_failures(legacy: Message) -> tuple[set[str], set[str], str | None]:
    """Run flufl.bounce detectors one by one; first detector with a result wins."""
    for detector in _FLUFL_DETECTORS:
        try:
            temporary, permanent = detector().process(legacy)
        except Exception:  # noqa: BLE001 - some detectors crash on odd input
            continue
        if temporary or permanent:
            return (
                {_decode_addr(a) for a in temporary} - {""},
                {_decode_addr(a) for a in permanent} - {""},
                detector.__name__,
            )
    return set(), set(), None


def _decode_addr(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    found = _ADDRESS_RE.search(text)
    return found.group(0).strip(".").lower() if found else ""


def _body_status(text: str) -> tuple[str | None, bool | None, str | None]:
    """(status, hard, diagnostic line) from SMTP codes and phrases in a bounce body.

    An MTA's own verdict ("This is a permanent error", "will be retried") beats codes
    quoted from the remote server, which qmail and Exim report even on final failures.
    """
    verdict = _PERMANENCE.search(text)
    status_match = _ENHANCED_STATUS_RE.search(text)
    status = ".".join(status_match.groups()) if status_match else None
    if status and status[0] not in "45":
        status = None
    if verdict:
        hard = verdict.group("permanent") is not None
        return status, hard, _diagnostic_line(text) or verdict.group(0)
    for line in text.splitlines():
        enhanced = _ENHANCED_STATUS_RE.search(line)
        if enhanced and enhanced.group(1) in "45" and re.search(r"[A-Za-z]{3}", line):
            status = ".".join(enhanced.groups())
            return status, status.startswith("5"), line.strip()[:300]
    for line in text.splitlines():
        reply = _SMTP_REPLY_RE.search(line)
        if reply and re.search(r"[A-Za-z]{3}", line) and not re.search(r"\d{3}-\d{3,4}", line):
            code = reply.group(1)
            return None, code.startswith("5"), line.strip()[:300]
    if _SOFT_PHRASES.search(text):
        return None, False, _first_line(_SOFT_PHRASES, text)
    if _HARD_PHRASES.search(text):
        return None, True, _first_line(_HARD_PHRASES, text)
    return None, None, None


_PERMANENCE = re.compile(
    r"(?P<permanent>this is a permanent (error|failure)|permanent(ly)? (fatal )?(error|failure)s?|"
    r"i'?ve given up|giving up|will not (be )?retr(y|ied)|delivery has failed permanently|"
    r"failed permanently)|(?P<temporary>this is a temporary (error|failure)|"
    r"temporar(y|ily) (error|failure|problem)|will be retried|will (continue to )?retry|"
    r"still trying|has been delayed|delivery (is )?delayed|not yet been delivered|"
    r"no action is required|will continue to (try|attempt))",
    re.IGNORECASE,
)


def _diagnostic_line(text: str) -> str | None:
    for line in text.splitlines():
        coded = _ENHANCED_STATUS_RE.search(line) or _SMTP_REPLY_RE.search(line)
        if coded and re.search(r"[A-Za-z]{3}", line):
            return line.strip()[:300]
    return None


def _first_line(pattern: re.Pattern[str], text: str) -> str | None:
    for line in text.splitlines():
        if pattern.search(line):
            return line.strip()[:300]
    return None


def _heuristic_recipients(headers: MessageHeaders, text: str) -> list[str]:
    """Addresses a non-standard bounce names as failed, from headers and the body."""
    failed = headers.get("x-failed-recipients")
    if failed:
        return [a.lower() for a in _ADDRESS_RE.findall(failed)]
    found: list[str] = []
    ours = {headers.from_addr or "", *headers.to_addrs}
    block_left = 0
    notice = _until_returned_copy(text)
    for line in notice.splitlines()[:300]:
        if _RECIPIENT_BLOCK_START.search(line):
            block_left = 6
        elif line.strip() and block_left:
            block_left -= 1
        if not (block_left or _FAILED_LINE.search(line)):
            continue
        for raw_addr in _ADDRESS_RE.findall(line):
            addr = _tidy_address(raw_addr)
            if addr not in found and addr not in ours:
                found.append(addr)
    return found[:10] or _only_named_address(notice, ours)


def _only_named_address(notice: str, ours: set[str]) -> list[str]:
    """The one address a short notice names (not ours, not a mail system), else nothing.

    Gateways (Mimecast, Barracuda, hosted panels) write "Your message to: a@b was blocked"
    in shapes no line rule foresees; when exactly one outside address appears in the
    notice, it is the recipient that failed.
    """
    named = {
        _tidy_address(a)
        for a in _ADDRESS_RE.findall(notice[:5000])
        if not _DAEMON_LOCALPARTS.match(a.split("@", 1)[0])
    }
    named -= ours
    return sorted(named) if len(named) == 1 else []


_RECIPIENT_BLOCK_START = re.compile(
    r"following (recipients?|address(es)?|\w+ addresses)|recipient\(s\)|address\(es\)|"
    r"failed recipients|addresses failed|could not be delivered to:?\s*$|"
    r"(permanent|fatal) errors? -*\s*$|recipients or groups|"
    r"(not|n't) (be )?(delivered|reach\w*) (to|some)|undeliverable to|"
    r"^\s*(your message to|recipient|address|destinataire|destinatario|empf[äa]nger)s?\s*:|"
    r"(n'a pas pu|no se pudo|konnte nicht)[^\n]*(:|à|a|an)\s*$|"
    r"destinataires ou groupes|destinatarios o grupos|empf[äa]nger oder gruppen",
    re.IGNORECASE,
)
_FAILED_LINE = re.compile(
    r"unknown|not exist|no such|invalid|failed|rejected|refused|undeliverable|could not|"
    r"unable|full|quota|disabled|not found|addressed to|not known|"
    r"^[\s>]*<?[^\s<>:]+@[^\s<>]+?>?:?\s*$|^\s*<[^\s<>]+@[^\s<>]+>:",
    re.IGNORECASE,
)


#: Postfix "<a@x> (expanded from <list@y>): ...", sendmail "a@x\n    (expanded from: list@y)"
_EXPANDED_FROM = re.compile(
    r"<?([^\s<>()]+@[^\s<>()]+?)>?:?\s*\(expanded from:?\s*<?([^\s<>()]+@[^\s<>()]+?)>?\s*\)",
    re.IGNORECASE,
)


def _as_sent(addresses: list[str], text: str) -> list[str]:
    """Each failed address as we sent it: an alias's target ("a@x (expanded from: b@y)")
    is reported as the address it was expanded from, as Original-Recipient is preferred in
    a delivery report."""
    aliases = {
        _tidy_address(m.group(1)): _tidy_address(m.group(2))
        for m in _EXPANDED_FROM.finditer(_until_returned_copy(text)[:20_000])
    }
    return list(dict.fromkeys(aliases.get(a, a) for a in addresses))


def _tidy_address(value: str) -> str:
    """Drop quoting and X.400/URI prefixes ("SMTP=a@b", "'a@b") from a found address."""
    value = value.strip(".'\"`").lower()
    return re.sub(r"^(smtp|rfc822|mailto)[=:]", "", value)


def _until_returned_copy(text: str) -> str:
    """Bounce text before the copy of the original message starts."""
    match = re.search(
        r"^.*(copy of (the|your) (original )?message|original message (follows|headers)|"
        r"below this line|message headers follow|the header and top|"
        r"^[\s>*-]*(returned|original|undelivered) (message|mail)( headers)?\W*$|"
        r"first \d+ lines of your|-+ ?returned mail ?-+|reads \(in part\)|"
        r"original message (is )?(attached|included)).*$",
        text,
        re.IGNORECASE | re.MULTILINE,
    )
    return text[: match.start()] if match else text


def analyse_bounce(
    msg: Message, legacy: Message, headers: MessageHeaders, text: str
) -> BounceReport | None:
    """Return a BounceReport when the message is a non-delivery report, else None."""
    full_text = text or body_text(msg)
    is_report = headers.content_type == "multipart/report" and (
        headers.report_type in (None, "delivery-status")
    )
    dsn_texts = _delivery_status_texts(msg)
    if (
        not dsn_texts
        and not is_report
        and not headers.get("x-failed-recipients")
        and not _header_signals(headers, msg)
        and not _DSN_FIELD_LINE.search(full_text)
    ):
        # Without a report, DSN fields, a mail-system sender or a failure subject, the body
        # signals alone can never make it a bounce below (see _enough_signals): skip them.
        return None
    signals = bounce_signals(headers, msg, full_text)
    reasons: list[str] = []
    recipients: list[RecipientFailure] = []
    for dsn_text in dsn_texts:
        recipients += parse_dsn_fields(dsn_text)
    if recipients:
        reasons.append(_dsn_reason(recipients))
    elif dsn_texts and not is_report and not signals:
        return None
    elif _DSN_FIELD_LINE.search(full_text) and signals:
        recipients = parse_dsn_fields(full_text)
        if recipients:
            reasons.append("DSN fields in the message text: " + _dsn_summary(recipients))
    if dsn_texts and not recipients and _only_successes(dsn_texts):
        return None
    strong = (
        bool(recipients) or bool(dsn_texts) or is_report or bool(headers.get("x-failed-recipients"))
    )
    daemon_with_detector = bool(
        signals and signals[0].startswith("sender") and _flufl_failures(legacy)[2]
    )
    enough = _enough_signals(signals, headers, full_text)
    if not strong and not enough and not daemon_with_detector:
        return None
    reasons.extend(signals)
    if recipients:
        return _report_from_dsn(recipients, reasons, msg, headers, full_text)
    return _report_from_heuristics(reasons, msg, legacy, headers, full_text)


def _enough_signals(signals: list[str], headers: MessageHeaders, text: str) -> bool:
    """Without a DSN, a mail-system sender plus one more sign, or subject plus body.

    A person's answer in a thread about a failure ("Re: Undeliverable: ...") is not a
    bounce, so subject+body only counts when the subject is not a reply or forward.
    """
    kinds = {s.split(" ", 1)[0] for s in signals}
    if "sender" in kinds and ("subject" in kinds or "body" in kinds or "returns" in kinds):
        return True
    replying = bool(_REPLY_PREFIX.match(headers.subject)) and not headers.auto_submitted
    return "subject" in kinds and "body" in kinds and not (replying and _quotes_a_thread(text))


def _quotes_a_thread(text: str) -> bool:
    return bool(re.search(r"^>|\bwrote:\s*$|^-+ ?Original Message", text, re.I | re.M))


def _only_successes(texts: list[str]) -> bool:
    actions = [
        m.group(1).lower() for t in texts for m in re.finditer(r"^Action:\s*(\w+)", t, re.I | re.M)
    ]
    return bool(actions) and all(a in ("delivered", "relayed", "expanded") for a in actions)


def _dsn_summary(recipients: list[RecipientFailure]) -> str:
    return ", ".join(
        f"{r.address} Action {r.action or '?'} Status {r.status or '?'}" for r in recipients[:5]
    )


def _dsn_reason(recipients: list[RecipientFailure]) -> str:
    statuses = sorted({r.status for r in recipients if r.status})
    if statuses:
        return f"RFC 3464 delivery report: Status {', '.join(statuses)}"
    return "RFC 3464 delivery report: " + _dsn_summary(recipients)


def _report_from_dsn(
    recipients: list[RecipientFailure],
    reasons: list[str],
    msg: Message,
    headers: MessageHeaders,
    text: str,
) -> BounceReport:
    failed = [r for r in recipients if not (r.action or "").startswith("delayed")]
    if failed and len(failed) < len(recipients):
        reasons.append("delayed recipients left out: the report also has failures")
        recipients = failed
    addresses = list(dict.fromkeys(r.address for r in recipients))
    hard_values = [r.hard for r in recipients]
    hard: bool | None = True if True in hard_values else (False if False in hard_values else None)
    first = next((r for r in recipients if r.hard == hard), recipients[0])
    if hard is None:
        _status, hard, _diag = _body_status(text)
    if any(r.action and r.action.startswith("delayed") for r in recipients) and hard is not True:
        reasons.append("Action: delayed (transient, RFC 3464)")
    return BounceReport(
        recipients=tuple(addresses),
        hard=hard,
        status=first.status,
        diagnostic=first.diagnostic,
        reasons=tuple(reasons),
        original_message_ids=original_message_ids(msg, headers, text),
    )


def _report_from_heuristics(
    reasons: list[str],
    msg: Message,
    legacy: Message,
    headers: MessageHeaders,
    text: str,
) -> BounceReport:
    temporary, permanent, detector = _flufl_failures(legacy)
    status, body_hard, diagnostic = _body_status(text)
    if temporary or permanent:
        reasons.append(f"flufl.bounce {detector} detector")
        addresses = sorted(permanent) + sorted(temporary - permanent)
        hard: bool | None = bool(permanent)
        if permanent and _DELAY_PHRASES.search(text):
            hard = False
    else:
        addresses = _heuristic_recipients(headers, text)
        # a report that names no cause and no delay is a failure: NDRs are final by default
        hard = True if body_hard is None else body_hard
        if addresses:
            reasons.append("failed recipients named in the bounce text")
    addresses = _as_sent(addresses, text)
    if diagnostic:
        reasons.append(f"diagnostic: {diagnostic[:120]}")
    return BounceReport(
        recipients=tuple(addresses),
        hard=hard,
        status=status,
        diagnostic=diagnostic,
        reasons=tuple(reasons),
        original_message_ids=original_message_ids(msg, headers, text),
    )
