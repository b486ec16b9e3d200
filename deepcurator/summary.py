"""How a run's test figures are printed (``evaluate``, the demo): plain text from
``metrics.json``, so any layer may print them."""

from __future__ import annotations

from typing import Any


def fmt_interval(interval: list[float] | None) -> str:
    """``[lo, hi]`` as ``"[0.812, 0.934]"`` (``"n/a"`` when None)."""
    return "n/a" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """Test track ROC-AUC and PR-AUC of the CNN and both baselines with their 95 % intervals,
    and the paired differences: what ``evaluate`` and the demo print."""
    boot = metrics.get("intervals", {})
    sources = {"CNN": metrics["test"], "band-statistics baseline": metrics["baseline"]["test"],
               "strong baseline": metrics.get("strong_baseline", {}).get("test")}
    lines = []
    for name, m in sources.items():
        if not m:
            continue
        t = m["track"]
        iv = boot.get("models", {}).get(name, {})
        lines.append(f"{name}: test tracks n={t['n']} ROC-AUC {_opt(t['roc_auc'])} {fmt_interval(iv.get('roc_auc'))}, "
                     f"PR-AUC {_opt(t['pr_auc'])} {fmt_interval(iv.get('pr_auc'))}")
    for pair, d in boot.get("differences", {}).items():
        lines.append(f"{pair}: ROC-AUC {d['roc_auc']['estimate']:+.3f} {fmt_interval(d['roc_auc']['interval'])}, "
                     f"PR-AUC {d['pr_auc']['estimate']:+.3f} {fmt_interval(d['pr_auc']['interval'])}")
    if boot:
        lines.append(f"(95 % percentile-bootstrap intervals over test tracks, {boot['used']} of {boot['resamples']} "
                     "resamples with both classes; differences paired)")
    return lines


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
