"""The report's "What partners said" (docs/answers.md): one section per question with each
partner's answer, and the partners who asked for help. Every word from mail or the roster
goes through `esc`: a partner's answer is shown as text, never as markup."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from outreach.core.questions import OTHER
from outreach.views.answers import CampaignAnswers, PartnerAnswers
from outreach.views.report_html import esc
from outreach.views.text import local_minute

CSS = """
.said { margin: 8px 0 16px; }
.said h3 { font-size: 1.05em; margin: 18px 0 6px; }
.said .answer { border-left: 3px solid var(--soft); padding: 2px 10px; margin: 6px 0; }
.said .answer header { color: var(--muted); font-size: .9em; }
.said .answer header strong { color: var(--ink); }
.said .answer p { margin: 2px 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.said .answer.asks { border-left-color: var(--warn); }
#asked-for-help li { margin: 2px 0; }
"""


def what_partners_said(said: CampaignAnswers, zone: ZoneInfo) -> str:
    """The section: who asked for help first, then each question with its answers."""
    helpers = said.asking_help
    parts = [f'<style>{CSS}</style><section class="said" id="what-partners-said">',
             "<h2>What partners said</h2>"]  # fmt: skip
    parts.append(f"<h3>Asked for help ({len(helpers)})</h3>")
    if helpers:
        asks = [q.id for q in said.questions if q.asks]
        items = []
        for p in helpers:
            words = "\n\n".join(p.answers[q] for q in asks if p.answers.get(q))
            items.append(f"<li>{_who(p)}" + (f": <q>{esc(words)}</q>" if words else "") + "</li>")
        parts.append(f'<ul id="asked-for-help">{"".join(items)}</ul>')
    else:
        parts.append('<p class="meta" id="asked-for-help">Nobody has asked for help yet.</p>')
    for question in said.questions:
        answered = said.answered(question.id)
        parts.append(
            f'<h3 id="question-{esc(question.id)}">{esc(question.number)}. {esc(question.text)} '
            f'<span class="meta">({len(answered)} of {len(said.partners)} answered)</span></h3>'
        )
        parts += [_answer(p, p.answers[question.id], zone, question.asks) for p in answered]
        if not answered:
            parts.append('<p class="meta">No answers yet.</p>')
    others = said.answered(OTHER)
    if others:
        parts.append(f'<h3 id="question-{OTHER}">Answered no question ({len(others)})</h3>')
        parts += [_answer(p, p.answers[OTHER], zone, False) for p in others]
    parts.append("</section>")
    return "\n".join(parts)


def _who(p: PartnerAnswers) -> str:
    org = f" · {esc(p.organization)}" if p.organization else ""
    return f"<strong>{esc(p.name or p.partner)}</strong>{org} · &lt;{esc(p.partner)}&gt;"


def _answer(p: PartnerAnswers, words: str, zone: ZoneInfo, asks: bool | None) -> str:
    flag = " asks" if asks and p.asks_help else ""
    return (
        f'<div class="answer{flag}"><header>{_who(p)} · {esc(local_minute(p.at, zone))}'
        f"</header><p>{esc(words)}</p></div>"
    )
