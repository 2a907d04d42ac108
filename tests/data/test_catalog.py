from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from llmroute.data.catalog import CAPABILITIES, Catalog, CatalogError, ModelSpec, bundled_catalog_path, load_catalog
from llmroute.data.tokens import count_tokens

SEED_MODELS = {
    "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "claude-3-5-sonnet-20241022", "claude-3-opus-20240229",
    "llama-2-70b", "llama-2-7b", "tinyllama",
}


def routerbench_models(rb_dir: Path) -> list[str]:
    with (rb_dir / "mbpp_train.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    return [c.removesuffix("|total_cost") for c in header if c.endswith("|total_cost")]


def test_bundled_catalog_covers_all_benchmark_and_seed_models(rb_dir: Path, lr_dir: Path) -> None:
    cat = load_catalog()
    rb = routerbench_models(rb_dir)
    lr = json.loads((lr_dir / "scores.json").read_text())[0]["scores"]
    assert len(rb) == 11 and len(lr) == 9
    assert set(rb) | set(lr) | SEED_MODELS <= set(cat)
    assert len(cat) == len(set(rb) | set(lr) | SEED_MODELS)
    for spec in cat.values():
        assert set(spec.capabilities) <= set(CAPABILITIES)
        assert spec.notes


def test_lookup_by_alias_and_cost() -> None:
    cat = load_catalog()
    spec = cat["qwen/qwen2.5-7b-instruct"]
    assert isinstance(spec, ModelSpec) and spec.name == "qwen2.5-7b-instruct"
    assert cat.canonical_name("claude-3-5-sonnet") == "claude-3-5-sonnet-20241022"
    assert "claude-3-opus" in cat
    assert cat.estimate_cost("gpt-4", 1000, 500) == pytest.approx((1000 * 30 + 500 * 60) / 1e6)
    assert cat.estimate_cost("tinyllama", 1000, 500) is None
    assert cat["gpt-4"].api_key_env == "OPENAI_API_KEY" and cat["tinyllama"].local
    with pytest.raises(KeyError, match="not in the catalog"):
        cat.estimate_cost("no-such-model", 1, 1)


def test_routerbench_costs_match_catalog_prices(rb_files: list[Path]) -> None:
    """RouterBench's total_cost is price x cl100k tokens: the catalog prices reproduce it."""
    import ast

    cat = load_catalog()
    checked = 0
    for path in rb_files:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                prompt = "\n\n".join(ast.literal_eval(row["prompt"]))
                for model in routerbench_models(path.parent):
                    answer = "\n\n".join(ast.literal_eval(row[f"{model}|model_response"]))
                    expected = cat.estimate_cost(model, count_tokens(prompt), count_tokens(answer))
                    assert float(row[f"{model}|total_cost"]) == pytest.approx(expected, rel=1e-6)
                    checked += 1
    assert checked == 39 * 11


def write_catalog(tmp_path: Path, models: list[dict[str, object]]) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def entry(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = yaml.safe_load(bundled_catalog_path().read_text())["models"][0]
    return {**base, **overrides}


def test_custom_catalog(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path, [entry(name="a", aliases=["b"]), entry(name="c", aliases=[])]))
    assert list(cat) == ["a", "c"] and cat["b"].name == "a" and len(cat) == 2


@pytest.mark.parametrize(
    ("bad", "field", "fragment"),
    [
        ({"input_price_per_1m": -1}, "input_price_per_1m", "greater than or equal to 0"),
        ({"capabilities": ["chat", "telepathy"]}, "capabilities.1", "telepathy"),
        ({"context_window": "big"}, "context_window", "big"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"rate_limit_rpm": 0}, "rate_limit_rpm", "greater than 0"),
        ({"rate_limit_tpm": "lots"}, "rate_limit_tpm", "lots"),
    ],
)
def test_bad_entry_names_file_model_and_field(
    tmp_path: Path, bad: dict[str, object], field: str, fragment: str
) -> None:
    path = write_catalog(tmp_path, [entry(name="ok"), entry(name="broken", **bad)])
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert (err.value.file, err.value.field) == (str(path), field)
    assert err.value.model is not None and "#2" in err.value.model and "broken" in err.value.model
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_missing_field(tmp_path: Path) -> None:
    bad = entry(name="x")
    del bad["local"]
    with pytest.raises(CatalogError) as err:
        load_catalog(write_catalog(tmp_path, [bad]))
    assert err.value.field == "local" and "Field required" in str(err.value)


def test_duplicate_name_or_alias(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="already used by model a") as err:
        load_catalog(write_catalog(tmp_path, [entry(name="a", aliases=[]), entry(name="b", aliases=["a"])]))
    assert err.value.model == "b" and err.value.field == "aliases"


def test_unreadable_and_malformed_catalogs(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(CatalogError, match="'models:' list"):
        load_catalog(bad)


def test_catalog_from_specs() -> None:
    spec = ModelSpec("m", "p", None, None, None, 1.0, 2.0, None, ("chat",), False, (), None)
    assert Catalog([spec]).estimate_cost("m", 1_000_000, 1_000_000) == pytest.approx(3.0)


def test_rate_limits_are_optional(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path, [entry(name="a", aliases=[], rate_limit_rpm=60, rate_limit_tpm=90000),
                                                entry(name="b", aliases=[])]))
    assert (cat["a"].rate_limit_rpm, cat["a"].rate_limit_tpm) == (60.0, 90000.0)
    assert (cat["b"].rate_limit_rpm, cat["b"].rate_limit_tpm) == (None, None)
    assert all(load_catalog()[m].rate_limit_rpm is None for m in load_catalog())


def test_user_catalog_is_merged_over_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: train/route took no --catalog, so the only fix for a missing latency was editing the package."""
    from llmroute.data.catalog import CATALOG_ENV, CatalogError, load_catalog, load_merged_catalog

    bundled = load_catalog()
    user = tmp_path / "mine.yaml"
    user.write_text(
        "models:\n"
        "  - name: gpt-4-1106-preview\n"
        "    typical_latency_ms: 4000\n"
        "  - name: my-local-model\n"
        "    provider: self-hosted\n"
        "    endpoint: http://127.0.0.1:7000/v1\n"
        "    api_key_env: null\n"
        "    context_window: 8192\n"
        "    input_price_per_1m: 0.05\n"
        "    output_price_per_1m: 0.05\n"
        "    typical_latency_ms: 300\n"
        "    capabilities: [chat]\n"
        "    local: true\n"
        "    aliases: []\n"
        "    notes: mine\n"
    )
    merged = load_merged_catalog(user)
    gpt4 = merged["gpt-4-1106-preview"]
    assert gpt4.typical_latency_ms == 4000
    assert gpt4.input_price_per_1m == bundled["gpt-4-1106-preview"].input_price_per_1m  # untouched fields stay
    assert merged["my-local-model"].local and len(merged) == len(bundled) + 1
    monkeypatch.setenv(CATALOG_ENV, str(user))
    assert load_merged_catalog()["gpt-4-1106-preview"].typical_latency_ms == 4000
    monkeypatch.delenv(CATALOG_ENV)
    assert load_merged_catalog()["gpt-4-1106-preview"].typical_latency_ms is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: gpt-4-1106-preview\n    typical_latency_ms: fast\n")
    with pytest.raises(CatalogError, match=r"bad.yaml, model #1 \('gpt-4-1106-preview'\), field 'typical_latency_ms'"):
        load_merged_catalog(bad)
    new_but_partial = tmp_path / "partial.yaml"
    new_but_partial.write_text("models:\n  - name: brand-new\n    typical_latency_ms: 10\n")
    with pytest.raises(CatalogError, match="brand-new"):
        load_merged_catalog(new_but_partial)


def test_latency_learned_from_logs_fills_only_unknown_catalog_latencies() -> None:
    import pandas as pd

    from llmroute.data.catalog import load_catalog
    from llmroute.data.observed import observed_latencies
    from llmroute.training.train import specs_with_observed_latency

    cat = load_catalog()
    df = pd.DataFrame({
        "model": ["gpt-4-1106-preview"] * 6 + ["claude-v2"] * 2,
        "latency_ms": [100.0, 200.0, 300.0, 400.0, 500.0, None, 50.0, 60.0],
    })
    lat = observed_latencies(df)
    assert set(lat) == {"gpt-4-1106-preview"}  # claude-v2: too few calls to learn from
    assert lat["gpt-4-1106-preview"].median_ms == 300.0 and lat["gpt-4-1106-preview"].calls == 5
    specs = specs_with_observed_latency({m: cat[m] for m in ("gpt-4-1106-preview", "claude-v2")}, lat)
    assert specs["gpt-4-1106-preview"].typical_latency_ms == 300.0  # type: ignore[union-attr]
    assert "median of 5 logged calls" in (specs["gpt-4-1106-preview"].notes or "")  # type: ignore[union-attr]
    assert specs["claude-v2"].typical_latency_ms is None  # type: ignore[union-attr]
