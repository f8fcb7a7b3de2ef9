"""Pure decisions about inbound mail: is it worth downloading, whom does it concern, and
what it does to the sequence. No I/O: the ingest adapter feeds these functions lookups.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from outreach.core.inbound.classify import Classification
from outreach.core.inbound.mailparse import MessageHeaders
from outreach.core.inbound.skim import HeaderSkim
from outreach.core.model import LedgerRef

# Mail from these local parts, or with these subjects, may be a bounce of ours even when
# nothing in its headers points at us: its body says which message came back.
BOUNCE_SENDERS = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|mailer|bounces?|"
    r"mdaemon|nobody|microsoftexchange[0-9a-f]*)[@+]",
    re.IGNORECASE,
)
BOUNCE_SUBJECTS = re.compile(
    r"undeliver|delivery (status|fail|report|notification)|returned mail|failure notice|"
    r"mail delivery|non[- ]?delivery|could not be delivered|nicht zustellbar|"
    r"unzustellbar|non remis|no se puede entregar|rejected|delayed mail|warning: message",
    re.IGNORECASE,
)


# Mailbox domains shared by unrelated people: never evidence that a sender is a partner or a
# partner's colleague.
PUBLIC_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
    "yahoo.com", "ymail.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me",
    "protonmail.com", "gmx.com", "gmx.de", "web.de", "mail.com", "comcast.net", "att.net",
})  # fmt: skip


@dataclass(frozen=True)
class Match:
    """Whom a message concerns. `unverified` says why outreach does not act on it by itself
    (it goes to the review queue, where a person attributes or dismisses it)."""

    partner_id: int
    campaign: str | None
    step: int | None
    ledger_id: int | None
    rule: str
    unverified: str | None = None


def header_ids(headers: MessageHeaders) -> set[str]:
    """Message-IDs a message points at (In-Reply-To, References), without angle brackets."""
    ids = set(headers.references)
    if headers.in_reply_to:
        ids.add(headers.in_reply_to)
    return ids


def may_be_bounce(headers: MessageHeaders) -> bool:
    return bool(
        headers.return_path in ("", "<>")
        or (headers.from_addr and BOUNCE_SENDERS.match(headers.from_addr))
        or headers.report_type in ("delivery-status", "feedback-report")
        or BOUNCE_SUBJECTS.search(headers.subject or "")
    )


def worth_downloading(
    headers: MessageHeaders,
    our_ids: Collection[str],
    partner_addresses: Collection[str],
    partner_domains: Collection[str],
    unsubscribe_addresses: Collection[str],
) -> bool:
    """Decide from the headers alone whether a message may concern outreach.

    Only these are downloaded whole: a coordinator's mailbox is mostly other mail, and
    reading it all would be slower than it needs to be and none of our business.
    """
    if header_ids(headers) & set(our_ids):
        return True
    sender = headers.from_addr or ""
    if sender in partner_addresses:
        return True
    if sender.rpartition("@")[2] in partner_domains:
        return True
    if set(headers.to_addrs) & set(unsubscribe_addresses):
        return True
    return may_be_bounce(headers)


def from_partner(
    skim: HeaderSkim, partner_addresses: Collection[str], partner_domains: Collection[str]
) -> bool:
    """The sender test of `worth_downloading` (the skim's sender address is exact)."""
    sender = skim.from_addr or ""
    return sender in partner_addresses or sender.rpartition("@")[2] in partner_domains


def may_concern(
    skim: HeaderSkim,
    our_ids: Collection[str],
    partner_addresses: Collection[str],
    partner_domains: Collection[str],
    unsubscribe_addresses: Collection[str],
) -> bool:
    """False only when `worth_downloading` would say no for these headers (above):
    every test there, answered from what the skim knows for certain."""
    if not skim.ids.isdisjoint(our_ids):
        return True
    if from_partner(skim, partner_addresses, partner_domains):
        return True
    if unsubscribe_addresses and (
        skim.recipients_unclear
        or any(address in skim.recipients for address in unsubscribe_addresses)
    ):
        return True
    return bool(
        skim.return_path in ("", "<>")
        or (skim.from_addr and BOUNCE_SENDERS.match(skim.from_addr))
        or skim.report
        or BOUNCE_SUBJECTS.search(skim.subject)
    )


def _match_of(ref: LedgerRef, rule: str, unverified: str | None = None) -> Match:
    """A match on one of our messages: its partner, campaign and step."""
    return Match(ref.partner_id, ref.campaign, ref.step, ref.id, rule, unverified)


def _latest_match(
    partner_id: int, ref: LedgerRef | None, rule: str, unverified: str | None = None
) -> Match:
    """A match on a partner's most recent message from outreach (or none yet)."""
    if ref is None:
        return Match(partner_id, None, None, None, rule, unverified)
    return Match(partner_id, ref.campaign, ref.step, ref.id, rule, unverified)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def colleague(sender: str, partner_address: str) -> bool:
    """The sender writes from the partner's own domain (not a public mailbox provider)."""
    domain = domain_of(sender)
    return (
        bool(sender)
        and "@" in sender
        and domain == domain_of(partner_address)
        and domain not in PUBLIC_DOMAINS
    )


#: The partners an unverified report is listed under, at most (the reason names how many).
MAX_NAMED = 20

#: Kinds that change a partner's status everywhere: only the partner's own address (or a
#: report quoting one of our Message-IDs) may cause that.
STATUS_KINDS = frozenset({"unsubscribe", "bounce"})
#: Kinds that change a sequence (stop or pause the follow-ups).
SEQUENCE_KINDS = frozenset({"reply", "auto_reply"})


def match_message(
    result: Classification,
    ledger_by_id: Mapping[str, LedgerRef],
    partner_by_address: Mapping[str, int],
    latest_by_partner: Mapping[int, LedgerRef],
    partner_by_domain: Mapping[str, int],
    trusting_campaigns: Collection[str] = (),
) -> list[Match]:
    """Whom a message concerns, in order of certainty, and whether outreach may act on it.

    - A bounce or complaint acts when it quotes one of our Message-IDs (the returned
      message, its headers, In-Reply-To or References; ours are unguessable). One that
      only names roster addresses is unverified: anyone can write such a report.
    - Other mail in a partner's thread (In-Reply-To / References) counts for its sender: the
      partner; another roster partner (for themselves); a colleague at the partner's own
      domain; anyone in the thread when the campaign trusts its threads (match_domain), for
      replies and auto-replies only. Anyone else is unverified, and only the partner's own
      address can opt them out.
    - Mail outside a thread: the sender's address in the roster; the sender's domain for
      campaigns with match_domain (an opt-out from it is unverified).

    `trusting_campaigns` are those with match_domain = true.
    """
    headers = result.headers
    sender = headers.from_addr or ""
    sender_id = partner_by_address.get(sender)
    if result.kind == "bounce" or result.complaint:
        return _match_report(
            result,
            ledger_by_id,
            partner_by_address,
            latest_by_partner,
            partner_by_domain,
            trusting_campaigns,
        )
    refs = [
        ledger_by_id[p]
        for p in (headers.in_reply_to, *reversed(headers.references))
        if p and p in ledger_by_id
    ]
    if refs:
        return [
            _match_thread(result, refs, sender, sender_id, latest_by_partner, trusting_campaigns)
        ]
    return _match_sender(
        result, sender, sender_id, latest_by_partner, partner_by_domain, trusting_campaigns
    )


def _match_report(
    result: Classification,
    ledger_by_id: Mapping[str, LedgerRef],
    partner_by_address: Mapping[str, int],
    latest_by_partner: Mapping[int, LedgerRef],
    partner_by_domain: Mapping[str, int],
    trusting_campaigns: Collection[str],
) -> list[Match]:
    what = "complaint" if result.complaint else "bounce"
    for message_id in result.original_message_ids:
        ref = ledger_by_id.get(message_id)
        if ref is not None:
            return [_match_of(ref, "the Message-ID inside the returned message")]
    named = [a for a in dict.fromkeys(result.bounced_recipients) if a in partner_by_address]
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    unverified = f"the {what} quotes none of the messages outreach sent" + (
        f"; it names {', '.join(named[:5])}{more}" if named else ""
    )
    # a forged report naming the whole roster is listed under a few partners, not all
    named = named[:MAX_NAMED]
    if named:
        label = "failed recipient" if what == "bounce" else "complaint about"
        return [
            _latest_match(
                partner_by_address[address],
                latest_by_partner.get(partner_by_address[address]),
                f"{label} {address} is in the roster",
                unverified,
            )
            for address in named
        ]
    found = _match_sender(
        result,
        result.headers.from_addr or "",
        partner_by_address.get(result.headers.from_addr or ""),
        latest_by_partner,
        partner_by_domain,
        trusting_campaigns,
    )
    return [replace(m, unverified=m.unverified or unverified) for m in found]


def _match_thread(
    result: Classification,
    refs: list[LedgerRef],
    sender: str,
    sender_id: int | None,
    latest_by_partner: Mapping[int, LedgerRef],
    trusting_campaigns: Collection[str],
) -> Match:
    rule = "In-Reply-To/References point at our message"
    if sender_id is not None:
        own = next((r for r in refs if r.partner_id == sender_id), None)
        if own is not None:
            return _match_of(own, rule)
        # another partner answering in someone else's thread: it counts for them
        return _latest_match(
            sender_id,
            latest_by_partner.get(sender_id),
            f"the sender is in the roster (wrote in the thread of our "
            f"message to {refs[0].to_addr})",
        )
    ref = refs[0]
    if colleague(sender, ref.to_addr):
        unverified = None
        if result.kind in STATUS_KINDS:
            unverified = (
                f"{sender} asked to stop in the thread of {ref.to_addr}: only the "
                "partner's own address can opt them out"
            )
        return _match_of(ref, f"{rule}; the sender {sender} is at the partner's domain", unverified)
    if result.kind not in SEQUENCE_KINDS | STATUS_KINDS:
        return _match_of(ref, f"{rule}; the sender {sender or '(none)'} is not the partner")
    if ref.campaign in trusting_campaigns and result.kind in SEQUENCE_KINDS:
        return _match_of(
            ref,
            f"{rule}; the sender {sender or '(none)'} is in the thread and "
            "the campaign has match_domain",
        )
    return _match_of(
        ref,
        rule,
        f"the sender {sender or '(no From)'} is not {ref.to_addr}: "
        "not in the roster, not at the partner's domain",
    )


def _match_sender(
    result: Classification,
    sender: str,
    sender_id: int | None,
    latest_by_partner: Mapping[int, LedgerRef],
    partner_by_domain: Mapping[str, int],
    trusting_campaigns: Collection[str],
) -> list[Match]:
    """Mail that points at no message of ours: its sender decides."""
    if sender_id is not None and (sender_id in latest_by_partner or result.kind == "unsubscribe"):
        # a request to stop from the partner's own address is honoured without a thread
        return [
            _latest_match(
                sender_id, latest_by_partner.get(sender_id), "the sender is in the roster"
            )
        ]
    partner_id = partner_by_domain.get(domain_of(sender)) if sender else None
    ref = latest_by_partner.get(partner_id) if partner_id is not None else None
    if partner_id is None or ref is None or ref.campaign not in trusting_campaigns:
        return []
    unverified = None
    if result.kind in STATUS_KINDS:
        unverified = (
            f"{sender} asked to stop, from the domain of {ref.to_addr}: only the "
            "partner's own address can opt them out"
        )
    return [_match_of(ref, "the sender's domain is a partner's", unverified)]
