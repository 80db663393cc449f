"""Policy loading: schema, merging, interpolation, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian import PolicyError
from guardian.amounts import METRICS
from guardian.identity import Identity
from guardian.policy import DEFAULT_LOOP_RULE, load_policy
from guardian.store import NO_LIMIT

GOOD = """\
version: 1
settings:
  on_store_error: fail_open
prices:
  my-finetune: {input: 0.30, output: 1.20, cache_read: 0.03}
budgets:
  - name: run-cap
    scope: run
    limits: {total_tokens: 200000, cost_usd: 2.5, llm_calls: 50}
  - name: research
    scope: agent
    window: day
    timezone: Europe/Paris
    match: {agent: "research-*", tags: [prod]}
    limits: {cost_usd: 0.000001}
    action: alert
    alert_at: [0.8, 0.5]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_compiles_to_integer_limits(tmp_path: Path) -> None:
    """Limits become integers (cost in micro-dollars), unset limits NO_LIMIT, thresholds sorted."""
    policy = load_policy([write(tmp_path, "p.yaml", GOOD)])
    run_cap, research = policy.budgets
    assert dict(zip(METRICS, run_cap.limits, strict=True)) == {
        "input_tokens": NO_LIMIT,
        "output_tokens": NO_LIMIT,
        "total_tokens": 200_000,
        "cost_usd": 2_500_000,
        "llm_calls": 50,
        "tool_calls": NO_LIMIT,
    }
    assert research.limited() == {"cost_usd": 1}
    assert research.alert_at == (0.5, 0.8)
    assert not research.enforced
    assert research.timezone.key == "Europe/Paris"
    assert policy.settings.on_store_error == "fail_open"
    assert policy.loops == (DEFAULT_LOOP_RULE,)


def test_match_uses_globs_and_required_tags(tmp_path: Path) -> None:
    """A budget applies when every glob matches and every listed tag is on the run."""
    policy = load_policy([write(tmp_path, "p.yaml", GOOD)])

    def names(identity: Identity) -> list[str]:
        return [b.name for b in policy.budgets_for(identity)]

    assert names(Identity.of("research-7", tags=["prod", "eu"])) == ["run-cap", "research"]
    assert names(Identity.of("research-7", tags=["dev"])) == ["run-cap"]
    assert names(Identity.of("writer", tags=["prod"])) == ["run-cap"]


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    """A broken file lists all of its problems, each located, not only the first."""
    bad = write(
        tmp_path,
        "bad.yaml",
        """\
version: 1
budgets:
  - name: a
    scope: user
    limits: {cost_usd: -1}
  - name: b
    scope: run
    limits: {llm_calls: 1, bogus: 2}
    action: explode
  - name: a
    scope: tenant
    window: fortnight
    limits: {llm_calls: 1}
""",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy([bad])
    found = {(p.line, p.field) for p in caught.value.problems}
    assert (5, "budgets[0].limits.cost_usd") in found
    assert (8, "budgets[1].limits.bogus") in found
    assert (9, "budgets[1].action") in found
    assert (10, "budgets[2].name") in found
    assert (12, "budgets[2].window") in found
    assert all(p.file == str(bad) for p in caught.value.problems)
    assert f"{bad}:9: budgets[1].action:" in str(caught.value)


def test_cross_field_rules_are_checked(tmp_path: Path) -> None:
    """A non-run scope needs a calendar window; a budget needs a limit; the timezone must exist."""
    bad = write(
        tmp_path,
        "x.yaml",
        """\
version: 1
budgets:
  - name: a
    scope: user
    limits: {llm_calls: 1}
  - name: b
    scope: run
    limits: {}
  - name: c
    scope: user
    window: day
    timezone: Mars/Olympus
    limits: {llm_calls: 1}
""",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy([bad])
    messages = {p.field: p.message for p in caught.value.problems}
    assert "calendar window" in messages["budgets[0]"]
    assert "at least one limit" in messages["budgets[1].limits"]
    assert "unknown timezone" in messages["budgets[2].timezone"]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is a PolicyError with the line where the parser stopped."""
    bad = write(tmp_path, "broken.yaml", "version: 1\nbudgets:\n  - name: [unclosed\n")
    with pytest.raises(PolicyError) as caught:
        load_policy([bad])
    (problem,) = caught.value.problems
    assert problem.file == str(bad)
    assert problem.line is not None
    assert "invalid YAML" in problem.message


def test_duplicate_yaml_keys_are_errors(tmp_path: Path) -> None:
    """A key written twice would silently drop the first value: it is an error instead."""
    bad = write(tmp_path, "dup.yaml", "version: 1\nsettings:\n  unknown_model: warn\n  unknown_model: block\n")
    with pytest.raises(PolicyError, match="duplicate key"):
        load_policy([bad])


def test_env_interpolation_and_missing_variables(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} are substituted; a missing variable is a located error; $$ is a dollar."""
    text = """\
version: 1
budgets:
  - name: ${BUDGET_NAME}
    scope: user
    window: ${WINDOW:-day}
    limits: {llm_calls: 1}
  - name: price$$
    scope: run
    limits:
      llm_calls: ${MISSING_LIMIT}
"""
    path = write(tmp_path, "env.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_policy([path], env={"BUDGET_NAME": "from-env"})
    (problem,) = [p for p in caught.value.problems if "MISSING_LIMIT" in p.message]
    assert (problem.line, problem.field) == (10, "budgets[1].limits.llm_calls")
    policy = load_policy([path], env={"BUDGET_NAME": "from-env", "MISSING_LIMIT": "7"})
    assert [b.name for b in policy.budgets] == ["from-env", "price$"]
    assert policy.budgets[0].window == "day"
    assert policy.budgets[1].limited() == {"llm_calls": 7}


def test_a_directory_merges_its_files_and_names_stay_unique(tmp_path: Path) -> None:
    """Files of a directory load into one policy; a name defined in two files is an error naming both."""
    write(tmp_path, "a.yaml", "version: 1\nbudgets:\n  - {name: one, scope: run, limits: {llm_calls: 1}}\n")
    write(
        tmp_path,
        "b.yml",
        "version: 1\nloops: []\nbudgets:\n  - {name: two, scope: run, limits: {llm_calls: 1}}\n",
    )
    policy = load_policy([tmp_path])
    assert [b.name for b in policy.budgets] == ["one", "two"]
    assert policy.loops == ()
    write(tmp_path, "c.yaml", "version: 1\nbudgets:\n  - {name: one, scope: run, limits: {llm_calls: 2}}\n")
    with pytest.raises(PolicyError, match=r"already defined in .*a\.yaml"):
        load_policy([tmp_path])


def test_missing_files_and_wrong_version_are_reported(tmp_path: Path) -> None:
    """A path that does not exist and a file without version 1 are both reported."""
    wrong = write(tmp_path, "v2.yaml", "version: 2\n")
    with pytest.raises(PolicyError) as caught:
        load_policy([tmp_path / "nope.yaml", wrong])
    text = str(caught.value)
    assert "nope.yaml: no such file or directory" in text
    assert "v2.yaml:1: version:" in text


def test_the_shipped_example_policies_are_valid() -> None:
    """Everything under policies/ and the demo policy load cleanly."""
    root = Path(__file__).resolve().parents[2]
    assert load_policy([root / "policies"]).budgets
    assert load_policy([root / "guardian" / "data" / "demo.yaml"]).budgets


def test_a_setting_set_in_two_files_is_an_error(tmp_path: Path) -> None:
    """Two files may not disagree silently on a setting: the second is reported with the first's name."""
    write(tmp_path, "a.yaml", "version: 1\nsettings:\n  on_store_error: fail_open\n")
    write(tmp_path, "b.yaml", "version: 1\nsettings:\n  on_store_error: fail_closed\n")
    with pytest.raises(PolicyError, match=r"b\.yaml:3: settings\.on_store_error: already set in .*a\.yaml"):
        load_policy([tmp_path])


def test_loop_rules_default_to_alerting_on_no_progress_only(tmp_path: Path) -> None:
    """The default rule and a rule that says nothing about alert_on halt on exact repeats and only
    alert on no_progress; alert_on: [] halts on every signal; max_tool_repeats reaches the settings."""
    assert DEFAULT_LOOP_RULE.action_for("repeated_tool_call") == "kill"
    assert DEFAULT_LOOP_RULE.action_for("no_progress") == "alert"
    path = tmp_path / "loops.yaml"
    path.write_text(
        "version: 1\nloops:\n  - name: quiet\n    match: {agent: a}\n    max_tool_repeats: 6\n"
        "  - name: strict\n    alert_on: []\n"
    )
    quiet, strict = load_policy([path]).loops
    assert quiet.settings.max_tool_repeats == 6
    assert (quiet.action_for("cycle"), quiet.action_for("no_progress")) == ("kill", "alert")
    assert strict.action_for("no_progress") == "kill"
