"""Budget files: valid budgets parse; bad ones fail naming the file, the budget and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.budgets.spec import BudgetFileError, BudgetSpec, key_id, load_budget_file, parse_budget, parse_budgets


def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "budgets.yaml"
    p.write_text(text)
    return p


def test_a_full_budget_file_parses(tmp_path: Path) -> None:
    p = _file(tmp_path, """
budgets:
  - {name: acme, tenant: acme, amount_usd: 200, window: monthly, timezone: Europe/Berlin, enforcement: pace, floor: 80%}
  - {name: all, global: true, amount_usd: 1000, window: weekly, rolling: true, thresholds: [0.9, 0.5]}
  - {name: bob, user: bob, amount_usd: 5, window: daily, enforcement: downgrade, ceiling_usd: 0.001, downgrade_at: 0.5}
  - {name: ci-key, key: 0123456789ab, amount_usd: 0, enforcement: block, webhook: "http://127.0.0.1:9/x"}
  - {name: unknown-tenant, tenant: nobody-yet, amount_usd: 1}
""")
    specs = {s.name: s for s in load_budget_file(p)}
    assert specs["acme"].floor_target() is not None and specs["acme"].tz.key == "Europe/Berlin"
    assert specs["all"].scope == "global" and specs["all"].subject == "*" and specs["all"].thresholds == (0.5, 0.9)
    assert specs["bob"].ceiling_usd == 0.001 and specs["bob"].downgrade_at == 0.5
    assert specs["ci-key"].amount_usd == 0 and specs["ci-key"].scope == "key"
    for s in specs.values():  # the dict form reads back to the same budget
        assert parse_budget(s.to_dict()) == s


def test_key_id_is_a_sha256_prefix() -> None:
    assert key_id("secret") == "2bb80d537b1d" and len(key_id("x")) == 12


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        ("{name: a, tenant: t, amount_usd: -1}", "amount_usd", "expected a number >= 0"),
        ("{name: a, tenant: t, amount_usd: .nan}", "amount_usd", "finite"),
        ("{name: a, tenant: t, amount_usd: lots}", "amount_usd", "expected a number"),
        ("{name: a, tenant: t}", "amount_usd", "missing"),
        ("{name: a, tenant: t, amount_usd: 1, window: hourly}", "window", "unknown window 'hourly'"),
        ("{name: a, tenant: t, amount_usd: 1, timezone: Mars/Olympus}", "timezone", "unknown timezone"),
        ("{name: a, tenant: t, amount_usd: 1, enforcement: shout}", "enforcement", "unknown enforcement"),
        ("{name: a, tenant: t, user: u, amount_usd: 1}", "tenant/key/user/global", "exactly one"),
        ("{name: a, amount_usd: 1}", "tenant/key/user/global", "exactly one"),
        ("{name: a, tenant: t, amount_usd: 1, enforcement: downgrade}", "ceiling_usd", "needs the expected cost ceiling"),
        ("{name: a, tenant: t, amount_usd: 1, floor: 80%}", "floor", "only a 'pace' budget"),
        ("{name: a, tenant: t, amount_usd: 1, enforcement: pace, floor: most}", "floor", "quality target"),
        ("{name: a, tenant: t, amount_usd: 1, thresholds: [0]}", "thresholds", "> 0"),
        ("{name: a, tenant: t, amount_usd: 1, webhook: ftp://x}", "webhook", "http"),
        ("{name: a, tenant: t, amount_usd: 1, colour: red}", "colour", "unknown field"),
        ("{tenant: t, amount_usd: 1}", "name", "non-empty name"),
    ],
)
def test_bad_budgets_name_file_budget_and_field(tmp_path: Path, entry: str, field: str, expected: str) -> None:
    p = _file(tmp_path, f"budgets:\n  - {{name: ok, tenant: z, amount_usd: 1}}\n  - {entry}\n")
    with pytest.raises(BudgetFileError) as err:
        load_budget_file(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}, budget #2") and f"field '{field}'" in msg and expected in msg, msg


def test_duplicates_are_errors(tmp_path: Path) -> None:
    p = _file(tmp_path, "budgets:\n  - {name: a, tenant: t, amount_usd: 1}\n  - {name: a, tenant: u, amount_usd: 1}\n")
    with pytest.raises(BudgetFileError, match=r"budget #2 \('a'\), field 'name': duplicate budget name"):
        load_budget_file(p)
    p = _file(tmp_path, "budgets:\n  - {name: a, tenant: t, amount_usd: 1}\n  - {name: b, tenant: t, amount_usd: 2}\n")
    with pytest.raises(BudgetFileError, match=r"field 'tenant': duplicate budget: 'a' is already a monthly budget"):
        load_budget_file(p)
    # the same subject with another window is fine
    assert len(parse_budgets({"budgets": [{"name": "a", "tenant": "t", "amount_usd": 1},
                                          {"name": "b", "tenant": "t", "amount_usd": 1, "window": "daily"}]}, "x")) == 2


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(BudgetFileError, match="cannot read the budget file"):
        load_budget_file(tmp_path / "missing.yaml")
    with pytest.raises(BudgetFileError, match="not valid YAML"):
        load_budget_file(_file(tmp_path, "budgets: [unclosed"))
    with pytest.raises(BudgetFileError, match="one key, 'budgets'"):
        load_budget_file(_file(tmp_path, "limits: []"))
    assert load_budget_file(_file(tmp_path, "")) == ()
    assert isinstance(parse_budget({"name": "g", "global": True, "amount_usd": 3}), BudgetSpec)
