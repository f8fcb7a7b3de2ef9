"""The partner roster: CSV parsing (pure) and `outreach partners import / list` (store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import (
    CSV_HEADER,
    SAMPLE_EMAILS,
    assert_input_error,
    edit,
    invoke,
    write_csv,
)
from hypothesis import given
from hypothesis import strategies as st

from outreach.config import load_config
from outreach.core.errors import RosterError
from outreach.core.model import BOUNCED, OPTED_OUT, Partner
from outreach.core.roster import column_key, parse_roster
from outreach.store import Store

NOW = datetime(2026, 10, 5, 15, 0, tzinfo=UTC)


def import_file(project: Path, path: Path, *extra: str) -> str:
    result = invoke(["partners", "import", *extra, str(path)], project=project)
    assert result.exit_code == 0, result.output
    return result.stdout


def listing(project: Path) -> list[dict[str, object]]:
    result = invoke(["partners", "list", "--json"], project=project)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    return data


def by_email(project: Path) -> dict[str, dict[str, object]]:
    return {str(p["email"]): p for p in listing(project)}


def store(project: Path) -> Store:
    return Store(load_config(project / "config.toml").database)


# --------------------------------------------------------------------------- parsing


def test_sample_roster_parses() -> None:
    from helpers import SAMPLE

    partners = parse_roster((SAMPLE / "partners.csv").read_bytes())
    assert tuple(p.email for p in partners) == SAMPLE_EMAILS
    maria = partners[0]
    assert (maria.name, maria.first_name, maria.organization) == (
        "María González",
        "María",
        "Mercy Health",
    )
    assert maria.tags == ("advisory", "internship-host")
    assert maria.timezone == "America/Chicago"
    assert maria.fields == {"city": "Lincoln"}


def test_utf8_with_and_without_bom_read_the_same() -> None:
    text = f"{CSV_HEADER}\njose@example.org,José Núñez,José,Café Ñ,,,,,\n"
    plain = parse_roster(text.encode("utf-8"))
    with_bom = parse_roster(text.encode("utf-8-sig"))
    assert plain == with_bom
    assert plain[0].name == "José Núñez"
    assert plain[0].email == "jose@example.org"  # the BOM did not stick to the first column


def test_bom_and_crlf_line_ends_through_the_cli(project: Path) -> None:
    path = project / "excel.csv"
    path.write_bytes(
        ("\r\n".join([CSV_HEADER, "a@example.org,Ana,,,,,,,", ""])).encode("utf-8-sig")
    )
    import_file(project, path)
    assert list(by_email(project)) == ["a@example.org"]


def test_emails_are_normalised() -> None:
    (partner,) = parse_roster(f"{CSV_HEADER}\n  Ana.Diaz@Example.ORG  ,Ana,,,,,,,\n".encode())
    assert partner.email == "ana.diaz@example.org"


def test_international_domain_is_kept_in_ascii_form() -> None:
    (partner,) = parse_roster(f"{CSV_HEADER}\nbob@exämple.org,Bob,,,,,,,\n".encode())
    assert partner.email == "bob@xn--exmple-cua.org"


def test_non_ascii_local_part_is_refused_at_import() -> None:
    # it would need SMTPUTF8 (RFC 6531), which outreach's messages do not use
    with pytest.raises(RosterError, match=r":2: email: 'josé@example.org'"):
        parse_roster(f"{CSV_HEADER}\njosé@example.org,José,,,,,,,\n".encode())


def test_tags_split_on_semicolons() -> None:
    (partner,) = parse_roster(
        (
            f"{CSV_HEADER}\na@example.org,A,,,,,,advisory; internship-host;;advisory ; tours,\n"
        ).encode()
    )
    assert partner.tags == ("advisory", "internship-host", "tours")


def test_only_email_is_required() -> None:
    (partner,) = parse_roster(b"email\nsolo@example.org\n")
    assert partner.email == "solo@example.org"
    assert (partner.name, partner.tags, partner.fields) == ("", (), {})


def test_extra_columns_are_kept_as_fields() -> None:
    data = "email,Region Name,Students Hosted,2025 Notes\na@example.org,Southeast,4,Great year\n"
    (partner,) = parse_roster(data.encode())
    assert partner.fields == {
        "region_name": "Southeast",
        "students_hosted": "4",
        "_2025_notes": "Great year",
    }


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Region Name ", "region_name"),
        ("E-mail", "e_mail"),
        ("2025", "_2025"),
        ("City", "city"),
        ("Región", "región"),
        ("Re\u0301gion Name", "région_name"),  # NFD, as some spreadsheets save it
        ("Ciudad/Región", "ciudad_región"),
    ],
)
def test_column_key(header: str, key: str) -> None:
    assert column_key(header) == key


def test_blank_lines_are_skipped_and_line_numbers_stay_true() -> None:
    data = f"{CSV_HEADER}\na@example.org,A,,,,,,,\n\n,,,,,,,,\nbad,B,,,,,,,\n"
    with pytest.raises(RosterError) as caught:
        parse_roster(data.encode(), "r.csv")
    assert str(caught.value).startswith("r.csv:5: email: 'bad'")


def test_quoted_commas_and_line_numbers_after_a_quoted_field() -> None:
    data = (
        f'{CSV_HEADER}\na@example.org,"Lee, Ana",,,,,,,\n'
        'b@example.org,"B ""Bee""",,,,,,,\nbad,,,,,,,,\n'
    )
    with pytest.raises(RosterError, match=r"^r\.csv:4: "):
        parse_roster(data.encode(), "r.csv")
    partners = parse_roster(data.encode().replace(b"\nbad,,,,,,,,", b""))
    assert [p.name for p in partners] == ["Lee, Ana", 'B "Bee"']


def test_every_bad_row_is_listed_by_line_number() -> None:
    data = "\n".join(
        [
            CSV_HEADER,
            "ok@example.org,Ok,,,,,,,",
            "bad-one,,,,,,,,",
            "ok2@example.org,Ok,,,,,,,",
            "bad@two,,,,,,,,",
            "tz@example.org,,,,,,,,Nowhere/Town",
            "OK@example.org,dup,,,,,,,",
        ]
    )
    with pytest.raises(RosterError) as caught:
        parse_roster(data.encode(), "r.csv")
    message = str(caught.value)
    for line in (3, 5, 6, 7):
        assert f"r.csv:{line}:" in message
    assert "r.csv:2:" not in message and "r.csv:4:" not in message
    assert "(4 problems, nothing imported)" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- import


def test_import_then_list(project: Path) -> None:
    out = import_file(project, project / "partners.csv")
    assert "imported 4 partners (4 new, 0 updated)" in out
    partners = listing(project)
    assert [p["email"] for p in partners] == sorted(SAMPLE_EMAILS)
    assert all(p["status"] == "active" for p in partners)
    maria = by_email(project)["maria.gonzalez@mercyhealth.example"]
    assert maria["name"] == "María González"
    assert maria["tags"] == ["advisory", "internship-host"]
    assert maria["fields"] == {"city": "Lincoln"}
    for required in ("email", "name", "organization", "pathway", "tags", "timezone", "status"):
        assert required in maria


def test_list_as_a_table_shows_the_status(project: Path) -> None:
    assert "no partners yet" in invoke(["partners", "list"], project=project).stdout
    import_file(project, project / "partners.csv")
    with store(project) as db:
        dan = db.partner_by_email("dan.oconnor@buildright.example")
        assert dan is not None and dan.id is not None
        db.set_partner_status(dan.id, BOUNCED, "550 no such user", NOW, event="status")
    result = invoke(["partners", "list"], project=project)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["EMAIL", "NAME", "ORGANIZATION", "PATHWAY", "STATUS"]
    assert len(lines) == 5
    dan_line = next(line for line in lines if line.startswith("dan.oconnor"))
    assert dan_line.rstrip().endswith("bounced")
    bounced = invoke(["partners", "list", "--json", "--status", "bounced"], project=project)
    assert [p["email"] for p in json.loads(bounced.stdout)] == ["dan.oconnor@buildright.example"]


def test_upsert_by_email_ignores_case(project: Path) -> None:
    import_file(project, project / "partners.csv")
    update = write_csv(
        project / "update.csv",
        [CSV_HEADER, "MARIA.Gonzalez@MercyHealth.EXAMPLE,María G. Ortiz,María,Mercy Health,,,,,"],
    )
    out = import_file(project, update)
    assert "(0 new, 1 updated)" in out
    partners = by_email(project)
    assert len(partners) == 4
    assert partners["maria.gonzalez@mercyhealth.example"]["name"] == "María G. Ortiz"
    preview = invoke(
        ["preview", "checkin", "--partner", "Maria.Gonzalez@mercyhealth.example", "--step", "1"],
        project=project,
    )
    assert preview.exit_code == 0, preview.output
    assert "María G. Ortiz" in preview.stdout


def test_import_is_all_or_nothing(project: Path) -> None:
    import_file(project, project / "partners.csv")
    before = listing(project)
    bad = write_csv(
        project / "bad.csv",
        [
            CSV_HEADER,
            "maria.gonzalez@mercyhealth.example,Changed Name,,,,,,,",
            "new.partner@example.org,New Partner,,,,,,,",
            "not-an-email,Broken,,,,,,,",
            "another.new@example.org,Another,,,,,,,",
            "broken@,Broken Too,,,,,,,",
        ],
    )
    result = invoke(["partners", "import", str(bad)], project=project)
    line = assert_input_error(result, f"{bad}:4:", f"{bad}:6:", "nothing imported")
    assert f"{bad}:2:" not in line and f"{bad}:3:" not in line
    assert listing(project) == before


def test_dry_run_changes_nothing(project: Path) -> None:
    result = invoke(
        ["partners", "import", "--dry-run", str(project / "partners.csv")], project=project
    )
    assert result.exit_code == 0
    assert "4 valid rows (4 new, 0 updated)" in result.stdout
    assert listing(project) == []


def test_extra_columns_are_usable_in_templates(project: Path) -> None:
    edit(
        project / "templates" / "followup.txt.j2",
        "Thank you,",
        "Greetings to {{ partner.city }} ({{ partner.students_hosted }} students).\nThank you,",
    )
    roster = write_csv(
        project / "extra.csv",
        [
            "email,name,organization,tags,city,Students Hosted",
            "ana@example.org,Ana Diaz,Acme,advisory,Lincoln,4",
        ],
    )
    import_file(project, roster)
    result = invoke(
        ["preview", "checkin", "--partner", "ana@example.org", "--step", "2"], project=project
    )
    assert result.exit_code == 0, result.output
    assert "Greetings to Lincoln (4 students)." in result.stdout


def test_reimport_never_erases_history(project: Path) -> None:
    import_file(project, project / "partners.csv")
    with store(project) as db:
        ids = {p.email: p.id for p in db.partners()}
        maria, dan, priya = (
            ids["maria.gonzalez@mercyhealth.example"],
            ids["dan.oconnor@buildright.example"],
            ids["priya.shah@netforge.example"],
        )
        assert maria and dan and priya
        db.set_partner_status(dan, BOUNCED, "550 5.1.1 no such user", NOW, event="status")
        db.set_partner_status(priya, OPTED_OUT, "asked to stop", NOW, event="status")
        db.add_event("replied", NOW, partner_id=maria, campaign="checkin", summary="Thanks!")
        ledger = db.queue_message(
            campaign="checkin",
            partner_id=maria,
            step=1,
            account="default",
            message_id="<1@district.example>",
            to_addr="maria.gonzalez@mercyhealth.example",
            subject="Hi",
            raw=b"raw",
            now=NOW,
        )
        assert ledger is not None
        events_before = db.query("SELECT * FROM events ORDER BY id")
        messages_before = db.query("SELECT * FROM messages")

    # the same roster again, and one that leaves two partners out
    import_file(project, project / "partners.csv")
    import_file(
        project,
        write_csv(project / "short.csv", [CSV_HEADER, "sam.lee@bistro21.example,Sam Lee,,,,,,,"]),
    )

    with store(project) as db:
        assert db.query("SELECT * FROM events ORDER BY id")[: len(events_before)] == events_before
        assert db.query("SELECT * FROM messages") == messages_before
        status = {p.email: p.status for p in db.partners()}
        assert {p.id for p in db.partners()} == set(ids.values())  # same rows, same ids
    assert status == {
        "maria.gonzalez@mercyhealth.example": "active",
        "dan.oconnor@buildright.example": "bounced",
        "priya.shah@netforge.example": "opted_out",
        "sam.lee@bistro21.example": "active",
    }


def test_list_json_is_an_array_with_one_object_per_partner(project: Path) -> None:
    assert listing(project) == []
    import_file(project, project / "partners.csv")
    partners = listing(project)
    assert len(partners) == 4
    assert all(isinstance(p, dict) for p in partners)
    assert len({p["email"] for p in partners}) == 4
    # non-ASCII stays readable (ensure_ascii=False) and round-trips
    assert "María González" in invoke(["partners", "list", "--json"], project=project).stdout


def test_non_ascii_local_part_names_the_line_through_the_cli(project: Path) -> None:
    path = write_csv(project / "utf8mail.csv", [CSV_HEADER, "josé@example.org,José,,,,,,,"])
    result = invoke(["partners", "import", str(path)], project=project)
    assert_input_error(result, f"{path}:2: email:", "josé@example.org")


def test_preview_finds_an_international_domain_as_typed(project: Path) -> None:
    path = write_csv(project / "idn.csv", [CSV_HEADER, "bob@exämple.org,Bob,,Acme,,,,advisory,"])
    import_file(project, path)
    result = invoke(
        ["preview", "checkin", "--partner", "bob@exämple.org", "--step", "1"], project=project
    )
    assert result.exit_code == 0, result.output
    assert "To: Bob <bob@xn--exmple-cua.org>" in result.stdout


def test_non_ascii_column_names_are_usable_in_templates(project: Path) -> None:
    edit(
        project / "templates" / "followup.txt.j2",
        "Thank you,",
        "Región: {{ partner.región }}\nThank you,",
    )
    roster = write_csv(
        project / "es.csv",
        ["email,Nombre,name,tags,Región", "ana@example.org,Ana,Ana Díaz,advisory,Sureste"],
    )
    import_file(project, roster)
    assert by_email(project)["ana@example.org"]["fields"] == {"nombre": "Ana", "región": "Sureste"}
    result = invoke(
        ["preview", "checkin", "--partner", "ana@example.org", "--step", "2"], project=project
    )
    assert result.exit_code == 0, result.output
    assert "Región: Sureste" in result.stdout


def test_a_partial_roster_updates_only_its_columns(project: Path) -> None:
    import_file(project, project / "partners.csv")
    owners = write_csv(
        project / "owners.csv",
        ["email,owner,phone", "maria.gonzalez@mercyhealth.example,akim,555-0101"],
    )
    assert "(0 new, 1 updated)" in import_file(project, owners)
    maria = by_email(project)["maria.gonzalez@mercyhealth.example"]
    assert maria["owner"] == "akim"
    assert maria["name"] == "María González"  # not in owners.csv: kept
    assert maria["organization"] == "Mercy Health"
    assert maria["tags"] == ["advisory", "internship-host"]
    assert maria["timezone"] == "America/Chicago"
    assert maria["fields"] == {"city": "Lincoln", "phone": "555-0101"}


def test_an_empty_cell_in_a_present_column_clears_the_value(project: Path) -> None:
    import_file(project, project / "partners.csv")
    clear = write_csv(project / "clear.csv", ["email,tags,city", "sam.lee@bistro21.example,,"])
    import_file(project, clear)
    sam = by_email(project)["sam.lee@bistro21.example"]
    assert sam["tags"] == [] and sam["fields"] == {"city": ""}
    assert sam["name"] == "Sam Lee"


def test_merge_partner_is_pure() -> None:
    from outreach.core.roster import merge_partner

    known = Partner(
        email="a@x.example", name="A", owner="jlee", fields={"city": "L"}, id=7, status="opted_out"
    )
    row = Partner(email="a@x.example", owner="akim", fields={"phone": "1"})
    merged = merge_partner(known, row, ("email", "owner", "phone"))
    assert (merged.name, merged.owner, merged.id, merged.status) == ("A", "akim", 7, "opted_out")
    assert merged.fields == {"city": "L", "phone": "1"}


csv_pieces = st.sampled_from(
    [
        *'ab,"\r\n;\x00é \t\ufeff',
        "email",
        "name",
        "tags",
        "timezone",
        "id",
        "a@b.example",
        "A@B.example",
        "America/Chicago",
        "Nowhere/Zone",
        "\u2028",
        "\xff",
    ]
)


@given(
    st.one_of(
        st.lists(csv_pieces, max_size=40).map(lambda parts: "".join(parts).encode()),
        st.lists(csv_pieces, max_size=40).map(lambda p: ("email,name\n" + "".join(p)).encode()),
        st.binary(max_size=200),
    )
)
def test_any_bytes_import_or_give_one_line_naming_the_file(data: bytes) -> None:
    try:
        partners = parse_roster(data, "r.csv")
    except RosterError as exc:
        assert str(exc).startswith("r.csv") and "\n" not in str(exc), str(exc)
        return
    emails = [p.email for p in partners]
    assert len(set(emails)) == len(emails)
    for partner in partners:
        for value in (partner.name, partner.organization, *partner.fields.values()):
            assert "\n" not in value and "\r" not in value and "\x00" not in value
