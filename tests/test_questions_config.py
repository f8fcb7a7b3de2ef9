"""A campaign's `[[questions]]` (issue 20): loaded and checked with file, line and key;
templates see them numbered."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import edit, invoke, line_of

from outreach.config import load_campaigns, load_config
from outreach.core.errors import Problems


def campaign_problems(project: Path) -> list[str]:
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    return caught.value.problems


def test_the_sample_campaign_declares_three_questions(project: Path) -> None:
    (campaign,) = load_campaigns(load_config(project / "config.toml"))
    assert [(q.id, q.number) for q in campaign.questions] == [
        ("changes", 1),
        ("lasting", 2),
        ("help", 3),
    ]
    changes, lasting, help_ = campaign.questions
    assert changes.text == "How has your workplace changed this year?"
    assert help_.asks and not changes.asks and not lasting.asks
    assert help_.keywords is not None and "intern" in help_.keywords


def test_a_duplicate_id_names_file_line_and_key(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'id = "lasting"', 'id = "changes"')
    (problem,) = campaign_problems(project)
    line = line_of(path, 'id = "changes"', occurrence=2)
    assert problem.startswith(f"{path}:{line}: questions[1].id:"), problem
    assert "already the id of questions[0]" in problem


def test_an_empty_text_names_file_line_and_key(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'text = "Do you see any of those changes lasting?"', 'text = "  "')
    (problem,) = campaign_problems(project)
    line = line_of(path, 'text = "  "')
    assert problem.startswith(f"{path}:{line}: questions[1].text:"), problem
    assert "must not be empty" in problem


@pytest.mark.parametrize(
    ("old", "new", "key", "says"),
    [
        ('id = "help"  ', "id = 3  ", "questions[2].id", "expected a string"),
        ('keywords = ["help"', 'keywords = [1, "help"', "questions[2].keywords", "list of strings"),
        ('id = "lasting"', 'id = "lasting"\nasks = "yes"', "questions[1].asks", "boolean"),
        ('id = "lasting"', 'id = "lasting"\nprompt = "x"', "questions[1].prompt", "unknown key"),
        ('id = "lasting"', 'id = "other"', "questions[1].id", "'other' is taken"),
    ],
)
def test_each_bad_question_key_is_a_problem(
    project: Path, old: str, new: str, key: str, says: str
) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, old, new)
    (problem,) = campaign_problems(project)
    assert f": {key}:" in problem and says in problem, problem
    assert problem.startswith(f"{path}:"), problem


def test_outreach_check_reports_a_bad_question_and_exits_2(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'id = "lasting"', 'id = "changes"')
    result = invoke(["check"], project=project)
    assert result.exit_code == 2, result.output
    assert "questions[1].id" in result.output and "Traceback" not in result.output


def test_templates_write_the_questions_numbered(project: Path) -> None:
    result = invoke(["preview", "checkin", "--step", "1"], project=project)
    assert result.exit_code == 0, result.output
    assert (
        "1. How has your workplace changed this year?\n"
        "2. Do you see any of those changes lasting?\n"
        "3. Is there anything we can do to help?\n\n"
    ) in result.output
    assert "<li>Is there anything we can do to help?</li>" in result.output


def test_a_campaign_without_questions_loads_with_none(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("# The questions the check-in asks")], encoding="utf-8")
    (campaign,) = load_campaigns(load_config(project / "config.toml"))
    assert campaign.questions == ()


def test_questions_is_a_reserved_template_var(project: Path) -> None:
    path = project / "config.toml"
    edit(path, "[template_vars]", '[template_vars]\nquestions = "x"')
    result = invoke(["check"], project=project)
    assert result.exit_code == 2
    assert "template_vars.questions" in result.output
