"""Measure outreach.core.inbound.classify against a labelled corpus folder.

Usage: python scripts/measure_corpus.py [FOLDER] [--verbose]

FOLDER holds *.eml files and labels.jsonl (see /work/shared/corpus/README.md); the default
is /work/shared/corpus/dev. Prints one line per metric with the target, then, with
--verbose, every failure.

Reply text: sources disagree on the signature. Where a source's expected texts keep device
lines or a "-- " block (some label of that source has one), its labels are compared with
`text` + `signature`; the others with `text` alone. "signature right" is scored on the sources
that keep them: the signature must be exactly what their expected text has from its first
"-- " line or device line on (found by REFERENCE_SIGNATURE, a reading of the labels kept
apart from the product's rules), or empty when it has none.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.core.inbound.classify import Classification, classify_message  # noqa: E402

DEFAULT_FOLDER = Path("/work/shared/corpus/dev")
#: Where a labelled reply text's signature starts: a "-- " line or a device line.
REFERENCE_SIGNATURE = re.compile(
    r"^(?:--\s*$|(?:sent|sendt|skickat|verzonden) (?:from|with|via|fra|från|vanaf) |"
    r"get outlook for |envoy[ée] (?:de|depuis|à partir de) |enviad[oa] (?:desde|de|do) |"
    r"von meinem |inviato da)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class Metric:
    """A ratio with its target; ``at_most`` flips the comparison (error rates)."""

    name: str
    target: float
    at_most: bool = False
    hits: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, hit: bool, detail: str) -> None:
        """Count one case; for ``at_most`` metrics a hit is the bad event (a failure)."""
        self.total += 1
        self.hits += hit
        if hit == self.at_most:
            self.failures.append(detail)

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    def line(self) -> str:
        if not self.total:
            return f"n/a  {self.name:<34}     -    (no labelled cases)"
        passed = self.value <= self.target if self.at_most else self.value >= self.target
        sign = "<=" if self.at_most else ">="
        mark = "ok  " if passed else "FAIL"
        return (
            f"{mark} {self.name:<34} {self.value:7.1%}  ({self.hits}/{self.total}, "
            f"target {sign} {self.target:.0%})"
        )


def squash(text: str | None) -> str:
    """Whitespace-normalised text for comparison."""
    return " ".join((text or "").split())


def measure(folder: Path) -> list[Metric]:
    """Classify every labelled message in ``folder`` and score the metrics."""
    bounce_detect = Metric("bounces detected", 0.97)
    bounce_rcpt = Metric("bounce recipients exactly right", 0.95)
    bounce_hard = Metric("bounce hard/soft right", 0.95)
    auto_detect = Metric("auto-replies detected", 0.95)
    auto_date = Metric("auto-reply return date right", 0.80)
    reply_misfiled = Metric("human replies misfiled", 0.02, at_most=True)
    reply_text = Metric("reply text right", 0.85)
    reply_signature = Metric("reply signature right", 0.85)
    # informational: sources disagree on keeping sign-offs, we keep them (talon convention)
    reply_checks = Metric("(info) reply contains/excludes", 0.0)
    contact = Metric("(info) contact change right", 0.0)
    unsub = Metric("unsubscribe requests", 0.85)
    other = Metric("other not filed as reply/unsub", 0.95)
    errors = Metric("classifier errors", 0.0, at_most=True)
    labels = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines()]
    keeping = sources_keeping_signatures(labels)
    for label in labels:
        if not line_ok(label):
            continue
        path = folder / label["file"]
        result = classify_message(path.read_bytes())
        name = label["file"]
        errors.add(result.kind == "error", f"{name}: {result.reasons}")
        kind = label["kind"]
        got = f"got {result.kind} {list(result.bounced_recipients)} hard={result.hard}"
        if kind == "bounce":
            score_bounce(label, result, name, got, bounce_detect, bounce_rcpt, bounce_hard)
        elif kind == "auto_reply":
            auto_detect.add(result.kind == "auto_reply", f"{name}: {got} {result.reasons}")
            if label.get("return_date"):
                when = result.return_date.isoformat() if result.return_date else None
                auto_date.add(
                    when == label["return_date"],
                    f"{name}: want {label['return_date']} got {when}",
                )
            if "contact_change" in label:  # own fixtures label it; the corpus does not
                contact.add(
                    result.contact_change == label["contact_change"],
                    f"{name}: want contact_change={label['contact_change']} {result.reasons}",
                )
        elif kind == "reply":
            reply_misfiled.add(result.kind != "reply", f"{name}: {got} {result.reasons}")
            keeps = source_of(label) in keeping
            score_reply_text(label, result, name, keeps, reply_text, reply_signature, reply_checks)
        elif kind == "unsubscribe":
            unsub.add(result.kind == "unsubscribe", f"{name}: {got} {result.reasons}")
        elif kind == "other":
            other.add(
                result.kind not in ("reply", "unsubscribe"), f"{name}: {got} {result.reasons}"
            )
    return [
        bounce_detect,
        bounce_rcpt,
        bounce_hard,
        auto_detect,
        auto_date,
        contact,
        reply_misfiled,
        reply_text,
        reply_signature,
        reply_checks,
        unsub,
        other,
        errors,
    ]


def line_ok(label: dict[str, object]) -> bool:
    return bool(label.get("file")) and bool(label.get("kind"))


def source_of(label: dict[str, object]) -> str:
    """The project a label comes from ("mailgun/talon:tests/..." -> "mailgun/talon")."""
    return str(label.get("source") or "").split(":", 1)[0]


def reference_split(text: str) -> tuple[str, str]:
    """(text, signature) of a labelled reply text, by REFERENCE_SIGNATURE."""
    match = REFERENCE_SIGNATURE.search(text)
    return (text, "") if match is None else (text[: match.start()], text[match.start() :])


def sources_keeping_signatures(labels: list[dict[str, object]]) -> set[str]:
    """Sources some of whose expected reply texts hold a signature."""
    return {
        source_of(label)
        for label in labels
        if label.get("kind") == "reply"
        and label.get("reply_text")
        and reference_split(str(label["reply_text"]))[1]
    }


def score_bounce(
    label: dict[str, object],
    result: Classification,
    name: str,
    got: str,
    detect: Metric,
    rcpt: Metric,
    hard: Metric,
) -> None:
    """Bounce metrics: detection, exact recipient set, hard/soft."""
    detect.add(result.kind == "bounce", f"{name}: {got} {result.reasons}")
    wanted = label.get("bounced")
    if isinstance(wanted, list):
        got_set = {a.lower() for a in result.bounced_recipients}
        want_set = {str(a).lower() for a in wanted}
        alternatives = {str(a).lower() for a in label.get("bounced_alternatives") or []}  # type: ignore[attr-defined]
        ok = got_set == want_set or (bool(alternatives) and got_set == alternatives)
        rcpt.add(ok, f"{name}: want {sorted(want_set)} got {sorted(got_set)}")
    if label.get("hard") is not None:
        hard.add(
            result.hard == label["hard"],
            f"{name}: want hard={label['hard']} got {result.hard} status={result.status} "
            f"diag={(result.diagnostic or '')[:80]!r}",
        )


def score_reply_text(
    label: dict[str, object],
    result: Classification,
    name: str,
    keeps_signature: bool,
    exact: Metric,
    signature: Metric,
    checks: Metric,
) -> None:
    """Reply text metrics: exact (whitespace-normalised; with the signature where the source
    keeps it), the signature itself, and contains/excludes checks."""
    if label.get("reply_text") is not None:
        want = str(label["reply_text"])
        got = result.text or ""
        if keeps_signature:
            got = f"{got}\n{result.signature or ''}"
        exact.add(
            squash(got) == squash(want),
            f"{name}: want {squash(want)[:100]!r}\n      got  {squash(got)[:200]!r}",
        )
        if keeps_signature:
            want_signature = reference_split(want)[1]
            signature.add(
                squash(result.signature) == squash(want_signature),
                f"{name}: want {squash(want_signature)[:100]!r}\n"
                f"      got  {squash(result.signature)[:200]!r}",
            )
    contains = label.get("reply_text_contains") or []
    excludes = label.get("reply_text_excludes") or []
    if contains or excludes:
        text = squash(result.text)
        ok = all(squash(str(c)) in text for c in contains) and not any(  # type: ignore[attr-defined]
            squash(str(e)) in text
            for e in excludes  # type: ignore[attr-defined]
        )
        checks.add(ok, f"{name}: contains {contains} excludes {excludes}\n      got {text[:200]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--verbose", "-v", action="store_true", help="list every failure")
    args = parser.parse_args(argv)
    metrics = measure(args.folder)
    for metric in metrics:
        print(metric.line())
    if args.verbose:
        for metric in metrics:
            if metric.failures:
                print(f"\n## {metric.name}")
                for failure in metric.failures:
                    print("  - " + failure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
