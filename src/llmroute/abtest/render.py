"""The A/B report as Markdown, self-contained HTML (plots embedded as PNG) and JSON files.

Plots (matplotlib object API on the Agg canvas, as in :mod:`llmroute.experiments.plots`, so the
process-wide pyplot backend is never touched): ``arms.png``, per arm the mean cost and the mean
quality with their 95% intervals; ``differences.png``, each treatment's difference to the control
with its interval.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmroute.abtest import stats

PLOTS = ("arms.png", "differences.png")


def _f(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def _usd(v: Any) -> str:
    return "–" if v is None else f"${v:.6f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.1%}"


ARM_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("requests", "requests", str),
    ("diverted_in", "diverted in", str),
    ("feedback", "feedback", str),
    ("mean_cost_usd", "mean cost", _usd),
    ("mean_expected_cost_usd", "mean expected cost", _usd),
    ("quality", "quality", _f),
    ("target_attainment", "target attainment", _pct),
    ("latency_ms_mean", "latency ms (mean)", lambda v: _f(v, ".0f")),
    ("latency_ms_p95", "latency ms (p95)", lambda v: _f(v, ".0f")),
    ("escalation_rate", "escalation", _pct),
    ("error_rate", "errors", _pct),
    ("cost_per_success_usd", "cost per success", _usd),
)


def arm_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "policy", *(label for _, label, _ in ARM_COLUMNS)]
    policies = {a["name"]: a["policy"] + (" (control)" if a["control"] else "") for a in report["experiment"]["arms"]}
    rows = [[name, policies[name], *(fmt(m[key]) for key, _, fmt in ARM_COLUMNS)]
            for name, m in report["arms"].items()]
    return head, rows


def _cmp_cell(c: dict[str, Any], money: bool = False) -> str:
    if c["diff"] is None:
        return "–"
    f = _usd if money else _f
    ci = f" [{f(c['lo'])}, {f(c['hi'])}]" if c["lo"] is not None else ""
    p = f" p={c['p_value']:.3g}" if c["p_value"] is not None else ""
    return f"{f(c['diff'])}{ci}{p}"


def comparison_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "measure", "test", "difference vs control [95% CI] p"]
    rows = []
    for name, c in report["comparisons"].items():
        rows += [
            [name, "quality", "Welch t", _cmp_cell(c["quality"]["welch"])],
            [name, "quality", "bootstrap", _cmp_cell(c["quality"]["bootstrap"])],
            [name, c["cost"]["measure"], "Welch t", _cmp_cell(c["cost"]["welch"], money=True)],
            [name, c["cost"]["measure"], "bootstrap", _cmp_cell(c["cost"]["bootstrap"], money=True)],
            [name, "latency ms", "Welch t", _cmp_cell(c["latency_ms"]["welch"])],
            [name, "target attainment", "two-proportion z", _cmp_cell(c["target_attainment"])],
            [name, "error rate", "two-proportion z", _cmp_cell(c["error_rate"])],
            [name, "escalation rate", "two-proportion z", _cmp_cell(c["escalation_rate"])],
        ]
    return head, rows


def power_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for name, c in report["comparisons"].items():
        p = c["power"]
        line = (f"{name}: detecting a quality difference of {p['quality_effect']:g} at {p['power']:.0%} power "
                f"(alpha {p['alpha']:g}) takes about {p['feedback_needed_per_arm']} requests with feedback per arm"
                f" ({p['feedback_more_needed']} more)")
        if p["sd_assumed"]:
            line += ", using the worst-case spread of a [0, 1] quality (too little feedback to estimate it)"
        if p["requests_needed_per_arm_for_cost"] is not None:
            line += (f"; a {p['cost_effect_relative']:.0%} cost difference takes about "
                     f"{p['requests_needed_per_arm_for_cost']} per arm ({p['requests_more_needed_for_cost']} more)")
        if p["quality_mde_now"] is not None:
            line += f"; with the data so far the smallest detectable quality difference is {p['quality_mde_now']:.4f}"
        out.append(line + ".")
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)


def _guardrail_lines(report: dict[str, Any]) -> list[str]:
    g = report["guardrails"]
    lines = [f"{arm}: stopped ({s['reason']})" for arm, s in g["stops_recomputed"].items()]
    lines += [f"{n} requests assigned to {arm} were served by the control (guardrail)"
              for arm, n in g["diverted_to_control"].items()]
    return lines or ["no arm broke a guardrail"]


def _source_line(report: dict[str, Any]) -> str:
    d = report["data"]
    extra = {k: v for k, v in d.items() if k not in ("requests", "unknown_arms", "first", "last")}
    when = f", {d['first']} to {d['last']}" if d.get("first") else ""
    return f"{d['requests']} requests{when}; " + "; ".join(f"{k}: {v}" for k, v in extra.items())


def counterfactual_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Simulation only: every arm on every prompt, paired differences to the control."""
    head = ["arm", "prompts", "quality", "mean cost", "target attainment", "quality diff [95% CI]",
            "cost diff [95% CI]"]

    def cell(d: dict[str, Any] | None, f: Any) -> str:
        return "–" if d is None else f"{f(d['diff'])} [{f(d['lo'])}, {f(d['hi'])}]"

    rows = [[name, str(c["prompts"]), _f(c["quality"]), _usd(c["mean_cost_usd"]), _pct(c["target_attainment"]),
             cell(c.get("quality_diff"), _f), cell(c.get("cost_diff_usd"), _usd)]
            for name, c in report.get("counterfactual", {}).items()]
    return head, rows


def render_markdown(report: dict[str, Any], plots: bool = True) -> str:
    e = report["experiment"]
    parts = [
        f"# A/B report: {e['name']}",
        e["description"] or "",
        (f"Unit: {e['unit']}; control: {e['control']}; a request meets the target when its feedback quality "
         f">= {e['success_threshold']:g}. Data: {_source_line(report)}."),
        "## Verdict",
        *[f"- {v}" for v in report["verdict"]],
        "## Arms",
        _md_table(*arm_rows(report)),
        "## Differences against the control",
        "Treatment minus control; 95% intervals; two-sided p-values.",
        _md_table(*comparison_rows(report)),
        "## Power",
        *[f"- {line}" for line in power_lines(report)],
        "## Guardrails",
        *[f"- {line}" for line in _guardrail_lines(report)],
    ]
    if report.get("counterfactual"):
        parts += ["## Counterfactual: every arm on every prompt",
                  "Paired bootstrap over the same prompts (simulation only; differences vs the control).",
                  _md_table(*counterfactual_rows(report))]
    if plots:
        parts += ["## Plots", *[f"![{p}]({p})" for p in PLOTS]]
    return "\n\n".join(p for p in parts if p) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """One self-contained page: the Markdown report's sections with the plots inlined."""
    e = report["experiment"]

    def li(items: Any) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"

    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}"></figure>'
        for n, b in images.items()
    )
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>A/B report: {html.escape(e['name'])}</title>"
        f"<style>{style}</style></head><body>"
        f"<h1>A/B report: {html.escape(e['name'])}</h1><p>{html.escape(e['description'])}</p>"
        f"<p>Unit: {html.escape(e['unit'])}; control: {html.escape(e['control'])}; data: "
        f"{html.escape(_source_line(report))}.</p>"
        f"<h2>Verdict</h2>{li(report['verdict'])}"
        f"<h2>Arms</h2>{_html_table(*arm_rows(report))}"
        f"<h2>Differences against the control</h2>{_html_table(*comparison_rows(report))}"
        f"<h2>Power</h2>{li(power_lines(report))}"
        f"<h2>Guardrails</h2>{li(_guardrail_lines(report))}"
        + (f"<h2>Counterfactual: every arm on every prompt</h2>{_html_table(*counterfactual_rows(report))}"
           if report.get("counterfactual") else "")
        + f"<h2>Plots</h2>{imgs}</body></html>\n"
    )


def _mean_ci(x: pd.Series) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval); NaN when undefined."""
    x = x.dropna()
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(stats.st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def plot_images(report: dict[str, Any], obs: pd.DataFrame) -> dict[str, bytes]:
    """The PNG plots of the report (see module docstring), by file name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report["arms"])
    cost_col = "cost_usd" if obs["cost_usd"].notna().any() else "expected_cost_usd"
    out: dict[str, bytes] = {}

    fig = Figure(figsize=(10.0, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for k, (col, label, scale) in enumerate(((cost_col, "mean cost per 1,000 requests (USD)", 1000.0),
                                            ("quality", "mean quality (feedback)", 1.0))):
        ax = fig.add_subplot(1, 2, k + 1)
        vals = [_mean_ci(obs.loc[obs["served"] == n, col]) for n in names]
        ax.bar(names, [v[0] * scale for v in vals], yerr=[np.nan_to_num(v[1]) * scale for v in vals],
               color=[f"C{i}" for i in range(len(names))], capsize=6)
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0] + " per arm, 95% CI")
        ax.tick_params(axis="x", labelrotation=15)
    out["arms.png"] = _png(fig)

    fig = Figure(figsize=(10.0, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for k, (key, label, scale) in enumerate((("cost", "cost difference per 1,000 requests (USD)", 1000.0),
                                            ("quality", "quality difference", 1.0))):
        ax = fig.add_subplot(1, 2, k + 1)
        treat = list(report["comparisons"])
        for i, n in enumerate(treat):
            c = report["comparisons"][n][key]["bootstrap"]
            if c["diff"] is None:
                continue
            lo = c["lo"] if c["lo"] is not None else c["diff"]
            hi = c["hi"] if c["hi"] is not None else c["diff"]
            ax.errorbar([c["diff"] * scale], [i], xerr=[[(c["diff"] - lo) * scale], [(hi - c["diff"]) * scale]],
                        fmt="o", capsize=6, color=f"C{names.index(n)}")
        ax.axvline(0.0, color="grey", linewidth=1)
        ax.set_yticks(range(len(treat)), treat)
        ax.set_ylim(-0.7, max(len(treat), 1) - 0.3)
        ax.set_xlabel(label)
        ax.set_title(f"vs control {report['experiment']['control']} (bootstrap 95% CI)")
    out["differences.png"] = _png(fig)
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(report: dict[str, Any], obs: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write report.json, report.md, report.html and the plots into ``out_dir``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = plot_images(report, obs)
    files = []
    for name, data in images.items():
        (out_dir / name).write_bytes(data)
        files.append(out_dir / name)
    (out_dir / "report.json").write_text(json.dumps(finite(report), indent=1, default=str, allow_nan=False))
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report, images))
    return [out_dir / "report.json", out_dir / "report.md", out_dir / "report.html", *files]
