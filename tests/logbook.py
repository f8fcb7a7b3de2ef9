"""A database filled by real cycles for the response-log tests: partners (some with
non-ASCII names), a campaign sent over SMTP (aiosmtpd), answers put into the IMAP mailbox
(pymap) and read by `worker.cycle()`.

`build_world` leaves this state (campaign "checkin", three steps, all times UTC):
  p0 María González   replied in Spanish with an emoji      -> sequence replied, in review
  p1 Dan O'Connor     out of office until 2026-12-07        -> sequence paused
  p2 Priya Shah       hard bounce                           -> partner bounced
  p3 Sam Lee          asked to stop                         -> partner opted_out
  p4 Zoë Ødegaard     never answered                        -> gets steps 2 and 3
  p5 Li Wei           replied in English (with <script>)    -> sequence replied, in review
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from workspace import Workspace

from outreach.testing import partner_mail

PEOPLE = [
    {"email": "maria@clinica.test", "name": "María González", "organization": "Clínica Sol"},
    {"email": "dan@buildright.test", "name": "Dan O'Connor", "organization": "BuildRight"},
    {"email": "priya@netforge.test", "name": "Priya Shah", "organization": "NetForge"},
    {"email": "sam@bistro.test", "name": "Sam Lee", "organization": "Bistro 21"},
    {"email": "zoe@fjord.test", "name": "Zoë Ødegaard", "organization": "Fjord & Co"},
    {"email": "li@harbor.test", "name": "Li Wei", "organization": "Harbor Labs"},
]
EMAILS = [p["email"] for p in PEOPLE]
SPANISH = "¡Hola! Nos encantaría recibir más estudiantes en primavera 🎉\nGracias por escribir."
ENGLISH = "We can host two interns. Is <script>alert('x')</script> a problem?"


def sent_to(smtp_server: Any, address: str, step: int = 1) -> bytes:
    mine = [m for m in smtp_server.messages if list(m.rcpt_tos) == [address]]
    return bytes(mine[step - 1].raw)


@dataclass
class World:
    ws: Workspace
    smtp: Any
    imap: Any


def build_world(ws: Workspace, smtp_server: Any, imap_server: Any) -> World:
    ws.add_partners(PEOPLE)
    worker = ws.worker()
    _, sent = worker.cycle()
    assert sent.sent == len(PEOPLE), sent
    ws.clock.advance(hours=5)
    when = ws.clock()
    imap_server.append(partner_mail.reply(sent_to(smtp_server, EMAILS[0]), SPANISH, when=when))
    imap_server.append(
        partner_mail.out_of_office(sent_to(smtp_server, EMAILS[1]), date(2026, 12, 7), when=when)
    )
    imap_server.append(partner_mail.bounce(sent_to(smtp_server, EMAILS[2]), when=when))
    imap_server.append(partner_mail.unsubscribe(sent_to(smtp_server, EMAILS[3]), when=when))
    read, _ = worker.cycle()
    assert read.recorded == 4, read
    ws.clock.advance(days=2)
    worker.cycle()  # step 2 to the silent partners (p4, p5)
    ws.clock.advance(hours=3)
    imap_server.append(
        partner_mail.reply(sent_to(smtp_server, EMAILS[5], step=2), ENGLISH, when=ws.clock())
    )
    read, _ = worker.cycle()
    assert read.recorded == 1, read
    ws.clock.advance(days=3)
    worker.cycle()  # step 3 to p4
    return World(ws, smtp_server, imap_server)
