"""Bad and hostile policy files: every problem is a located PolicyError, never a traceback or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian import PolicyError
from guardian.errors import PolicyProblem
from guardian.policy import load_policy


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def problems_of(path: Path) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        load_policy([path])
    return caught.value.problems


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reservation_ttl_s", ".inf"),
        ("reservation_ttl_s", ".nan"),
        ("reservation_ttl_s", "1.0e+17"),
        ("reservation_ttl_s", "0.001"),
        ("reservation_ttl_s", "86401"),
        ("run_ttl_s", "1e17"),
        ("run_ttl_s", "-.inf"),
        ("run_ttl_s", "40000000"),
        ("stream_block_tokens", "10000001"),
        ("default_max_output_tokens", "1000000000000000000000000"),
        ("default_max_output_tokens", "true"),
    ],
)
def test_settings_outside_what_the_store_can_hold_are_located(tmp_path: Path, field: str, value: str) -> None:
    """Non-finite, boolean or out-of-range settings (TTLs Redis cannot take in ms) fail at line and field."""
    path = write(tmp_path, "s.yaml", f"version: 1\nsettings:\n  {field}: {value}\n")
    (problem,) = problems_of(path)
    assert (problem.file, problem.line, problem.field) == (str(path), 3, f"settings.{field}")


def test_settings_at_their_bounds_are_accepted(tmp_path: Path) -> None:
    """The bounds are inclusive: one second to one day for a hold, up to a year for a run, 10M tokens."""
    path = write(
        tmp_path,
        "s.yaml",
        "version: 1\nsettings:\n  reservation_ttl_s: 86400\n  run_ttl_s: 31622400\n"
        "  stream_block_tokens: 10000000\n  default_max_output_tokens: 10000000\n",
    )
    settings = load_policy([path]).settings
    assert (settings.reservation_ttl_s, settings.run_ttl_s) == (86_400, 31_622_400)
    assert (settings.stream_block_tokens, settings.default_max_output_tokens) == (10_000_000, 10_000_000)


@pytest.mark.parametrize(
    "limit",
    [
        "total_tokens: 1000000000000000000000000000000",
        "total_tokens: 9223372036854775808",
        "total_tokens: 1000000000000001",
        "cost_usd: 1e20",
        "cost_usd: 1000000000.000001",
        "llm_calls: yes",
    ],
)
def test_limits_must_fit_the_ledger(tmp_path: Path, limit: str) -> None:
    """A limit past 10**15 (tokens, calls, or micro-dollars) or a boolean is a located error."""
    path = write(tmp_path, "l.yaml", f"version: 1\nbudgets:\n  - name: a\n    scope: run\n    limits:\n      {limit}\n")
    (problem,) = problems_of(path)
    metric = limit.partition(":")[0]
    assert (problem.line, problem.field) == (6, f"budgets[0].limits.{metric}")


def test_the_largest_limits_are_accepted(tmp_path: Path) -> None:
    """10**15 tokens and one billion dollars are still valid limits."""
    path = write(
        tmp_path,
        "l.yaml",
        "version: 1\nbudgets:\n  - name: a\n    scope: run\n"
        "    limits: {total_tokens: 1000000000000000, cost_usd: 1000000000}\n",
    )
    assert load_policy([path]).budgets[0].limited() == {"total_tokens": 10**15, "cost_usd": 10**15}


def test_other_numbers_are_finite_and_bounded(tmp_path: Path) -> None:
    """Prices, alert thresholds and loop settings reject NaN, booleans and absurd sizes, each located."""
    path = write(
        tmp_path,
        "n.yaml",
        """\
version: 1
prices:
  m: {input: 1.0e+30, output: 1}
budgets:
  - name: a
    scope: run
    limits: {llm_calls: 1}
    alert_at: [yes]
loops:
  - name: l
    similarity: .nan
    max_steps_without_progress: 1000000000000
    allow: [{tool: poll, max_repeats: 1000000000000}]
""",
    )
    found = {(p.line, p.field) for p in problems_of(path)}
    assert found == {
        (3, "prices.m.input"),
        (8, "budgets[0].alert_at[0]"),
        (11, "loops[0].similarity"),
        (12, "loops[0].max_steps_without_progress"),
        (13, "loops[0].allow[0].max_repeats"),
    }


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("window: 2\n    max_repeats: 3", "loops[0]", "window (2) must be at least max_repeats (3)"),
        ("allow: [{tool: x, max_repeats: 1}]", "loops[0].allow[0].max_repeats", "greater than or equal to 2"),
        ("allow: [{tool: x, max_repeats: 5}, {tool: x, max_repeats: 9}]", "loops[0].allow", "tool 'x' is listed twice"),
        ("window: 3\n    max_tool_repeats: 4", "loops[0]", "and max_tool_repeats (4)"),
        ("alert_on: [loops]", "loops[0].alert_on[0]", "Input should be 'repeated_tool_call'"),
    ],
)
def test_loop_rules_that_loop_settings_refuse_are_located(tmp_path: Path, rule: str, field: str, message: str) -> None:
    """A loop rule LoopSettings would refuse, or one tool allowed twice, is a located problem, not a traceback."""
    path = write(tmp_path, "loop.yaml", f"version: 1\nloops:\n  - name: l\n    {rule}\n")
    (problem,) = problems_of(path)
    assert (problem.file, problem.field) == (str(path), field)
    assert problem.line == (4 if field.endswith(("allow", "alert_on[0]", "max_repeats")) else 3)
    assert message in problem.message


def test_deep_nesting_is_a_located_error(tmp_path: Path) -> None:
    """5,000 nested lists are refused at the line where the nesting passes the bound (no RecursionError)."""
    path = write(tmp_path, "deep.yaml", "version: 1\nx:\n  " + "[" * 5000 + "]" * 5000 + "\n")
    (problem,) = problems_of(path)
    assert (problem.file, problem.line) == (str(path), 3)
    assert "nested deeper than 64 levels" in problem.message


def test_nesting_through_aliases_counts_too(tmp_path: Path) -> None:
    """Aliases cannot stack nodes deeper than the bound: the depth counts after expansion."""
    lines = ["version: 1", "a0: &a0 " + "[" * 40 + "]" * 40]
    lines += [f"a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 for i in range(1, 200)]
    (problem,) = problems_of(write(tmp_path, "stack.yaml", "\n".join(lines) + "\n"))
    assert problem.line is not None
    assert "nested deeper than 64 levels" in problem.message


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """A 300-byte "billion laughs" file is refused by counting its expansion, not by running out of memory."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 400
    (problem,) = problems_of(write(tmp_path, "bomb.yaml", text))
    assert problem.line is not None
    assert "100000 values once aliases are expanded" in problem.message


def test_a_recursive_alias_is_an_error(tmp_path: Path) -> None:
    """An anchor that contains its own alias is a located problem, not an endless walk."""
    (problem,) = problems_of(write(tmp_path, "cycle.yaml", "version: 1\nx: &a [1, *a]\n"))
    assert problem.line == 2
    assert "contains itself" in problem.message


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    """Anchors and aliases (a shared match block) remain valid YAML for a policy."""
    path = write(
        tmp_path,
        "alias.yaml",
        """\
version: 1
budgets:
  - name: a
    scope: run
    match: &prod {tags: [prod]}
    limits: {llm_calls: 1}
  - name: b
    scope: run
    match: *prod
    limits: {llm_calls: 2}
""",
    )
    assert [b.match.tags for b in load_policy([path]).budgets] == [frozenset({"prod"})] * 2


def test_a_non_utf8_byte_names_its_line_and_offset(tmp_path: Path) -> None:
    """A Latin-1 byte is reported at its line with its offset, not as a UnicodeDecodeError."""
    (problem,) = problems_of(write(tmp_path, "latin1.yaml", b"version: 1\n# caf\xe9\n"))
    assert problem.line == 2
    assert "not UTF-8" in problem.message
    assert "0xe9" in problem.message
    assert "offset 16" in problem.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("version: 1\nsettings:\n  bad: \x00\n", 3),
        ("version: 1\nwhen: 2026-02-30\n", 2),
        ("version: 1\n\nbig: " + "9" * 5000 + "\n", 3),
    ],
)
def test_values_yaml_cannot_read_are_located(tmp_path: Path, text: str, line: int) -> None:
    """A control character, an impossible date or an integer too long for Python are located problems."""
    (problem,) = problems_of(write(tmp_path, "v.yaml", text))
    assert (problem.line, problem.field) == (line, "")
    assert "invalid YAML" in problem.message


def test_a_broken_symlink_is_reported(tmp_path: Path) -> None:
    """A dangling .yaml symlink in a directory, or given directly, is a problem, not silently skipped."""
    write(tmp_path, "a.yaml", "version: 1\n")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "gone.yaml")
    (problem,) = problems_of(tmp_path)
    assert problem.file == str(tmp_path / "b.yaml")
    assert "broken symlink" in problem.message
    (problem,) = problems_of(tmp_path / "b.yaml")
    assert "broken symlink" in problem.message


def test_an_unreadable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be read is a problem naming it (simulated: the tests may run as root)."""
    path = write(tmp_path, "p.yaml", "version: 1\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    (problem,) = problems_of(path)
    assert problem.file == str(path)
    assert "cannot read: Permission denied" in problem.message


def test_a_directory_that_cannot_be_listed_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy directory that cannot be listed is a problem naming it (simulated: the tests may run as root)."""

    def refuse(self: Path) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    (problem,) = problems_of(tmp_path)
    assert (problem.file, problem.message) == (str(tmp_path), "cannot list: Permission denied")


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        (
            "budgets:\n  - name: d\n    scope: run\n    limts: {llm_calls: 1}\n",
            "budgets[0].limts",
            "did you mean 'limits'?",
        ),
        ("loops:\n  - name: l\n    max_repeat: 4\n", "loops[0].max_repeat", "did you mean 'max_repeats'?"),
        ("alerts:\n  slack:\n    webhok_url: https://x\n", "alerts.slack.webhok_url", "did you mean 'webhook_url'?"),
        ("setings: {}\n", "setings", "did you mean 'settings'?"),
        (
            "budgets:\n  - name: d\n    scope: run\n    limits: {llm_calls: 1}\n    zzz: 1\n",
            "budgets[0].zzz",
            "allowed here: name",
        ),
    ],
)
def test_an_unknown_key_suggests_the_one_meant(tmp_path: Path, text: str, field: str, hint: str) -> None:
    """A misspelt key says which key was probably meant; a key like no other lists the keys allowed there."""
    path = write(tmp_path, "typo.yaml", "version: 1\n" + text)
    problems = [p for p in problems_of(path) if p.field == field]
    assert len(problems) == 1
    assert problems[0].message.startswith("unknown field")
    assert hint in problems[0].message


def test_checking_without_the_environment_skips_only_what_needs_it(tmp_path: Path) -> None:
    """check_policy_without_env: a field holding an unset ${VAR} (and the record that needs it) is not judged
    and is listed; every other problem is still found."""
    from guardian.policy import check_policy_without_env

    text = (
        "version: 1\nbudgets:\n  - name: d\n    scope: run\n    limits: {llm_calls: '${CAP}'}\n"
        "alerts:\n  slack:\n    webhook_url: ${SLACK_WEBHOOK}\n    mention: '@oncall'\n"
    )
    path = write(tmp_path, "env.yaml", text)
    problems, refs = check_policy_without_env([path])
    assert [(r.field, r.name) for r in refs] == [
        ("budgets[0].limits.llm_calls", "CAP"),
        ("alerts.slack.webhook_url", "SLACK_WEBHOOK"),
    ]
    assert [(p.field, p.line) for p in problems] == [("alerts.slack.mention", 9)]
