"""Re-evaluate a saved run from the store (its model.keras on its own splits) and rewrite its
metrics.json, plots and MODEL_CARD.md."""

from __future__ import annotations

import argparse

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default="latest", help="run id, or 'latest' (default)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator import runs
    from deepcurator.store import open_store
    from deepcurator.summary import summary_lines
    from deepcurator.training.report import evaluate_run

    store = open_store(cfg)
    run_id = runs.resolve(store, args.run)
    metrics = evaluate_run(cfg, store, run_id)
    for split in ("val", "test"):
        for level in ("slice", "track"):
            m, b = metrics[split][level], metrics["baseline"][split][level]
            print(f"evaluate {run_id}: {split} {level}s n={m['n']}: ROC-AUC {_f(m['roc_auc'])} "
                  f"PR-AUC {_f(m['pr_auc'])} accuracy {_f(m['accuracy'])} (baseline ROC-AUC {_f(b['roc_auc'])})")
    for line in summary_lines(metrics):
        print(f"evaluate {run_id}: {line}")
    print(f"evaluate {run_id}: the test split has been scored {metrics['test_scored']['times']} time(s) "
          f"(test_scored.json; tracks aggregated by serve.aggregation={metrics['aggregation']['method']})")
    print(f"evaluate: wrote {store.describe()}/runs/{run_id}/metrics.json")
    return 0


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
