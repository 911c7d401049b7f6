"""Benchmark: the drift check on 1M x 20 columns (current) against a 1M-row reference.

Variants, each in a fresh process so memory figures do not mix:

- ``evidently``: trainyard's check (``trainyard.drift.evidently.run_evidently``: Evidently 0.7
  ``DataDriftPreset``, include_tests) on all rows, then ``save_html``;
- ``evidently_sampled_<n>``: the same after ``trainyard.drift.evidently.sample_rows`` caps both
  sides at n rows (the spec's ``drift.sample_size``; churn ships 50,000);
- ``scipy_ks_chi2``: the plain baseline: ``scipy.stats.ks_2samp`` per numeric column,
  chi-square on category counts per categorical column, all rows;
- ``scipy_wasserstein_js``: the same statistics Evidently picks for large data (Wasserstein
  distance normed by the reference's std; Jensen-Shannon distance of category frequencies)
  computed directly with scipy, all rows.

Data: 15 numeric columns (normal, gamma, Poisson, uniform) and 5 categorical ones (3-8 values),
seeded; the current side shifts num_00, num_01 and cat_00. For each variant: wall time of the
check (imports excluded and reported apart), the process's RSS before the check and its peak
during the check (sampled every 20 ms), and which columns it flags.

Usage: python benchmarks/drift_check.py [--rows N] [--variants a,b,...]
Writes benchmarks/results/drift_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NUMERIC = 15
CATEGORICAL = 5
SHIFTED = ("num_00", "num_01", "cat_00")
DEFAULT_VARIANTS = (
    "evidently",
    "evidently_sampled_100000",
    "evidently_sampled_50000",
    "scipy_ks_chi2",
    "scipy_wasserstein_js",
)


def make_frame(rows: int, seed: int, shifted: bool):
    """``rows`` x 20 columns; ``shifted`` moves num_00, num_01 and cat_00."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(NUMERIC):
        kind = i % 4
        shift = 0.5 if shifted and f"num_{i:02d}" in SHIFTED else 0.0
        if kind == 0:
            values = rng.normal(50 + 10 * shift, 10, rows)
        elif kind == 1:
            values = rng.gamma(2.0, 20.0 * (1 + shift), rows)
        elif kind == 2:
            values = rng.poisson(3.0 + 3 * shift, rows).astype("int64")
        else:
            values = rng.uniform(0, 100 * (1 + shift), rows)
        columns[f"num_{i:02d}"] = values
    for i in range(CATEGORICAL):
        levels = np.array([f"v{j}" for j in range(3 + i)], dtype=object)
        weights = np.linspace(1, 2, len(levels))
        if shifted and f"cat_{i:02d}" in SHIFTED:
            weights = weights[::-1] ** 3
        columns[f"cat_{i:02d}"] = rng.choice(levels, size=rows, p=weights / weights.sum())
    return pd.DataFrame(columns)


def bench_spec():
    """A pipeline spec naming the 20 columns (drift settings as churn ships them)."""
    from trainyard.core.spec import parse_spec

    numeric = [f"num_{i:02d}" for i in range(NUMERIC)]
    categorical = [f"cat_{i:02d}" for i in range(CATEGORICAL)]
    return parse_spec(
        {
            "name": "bench",
            "source": {"kind": "files", "prefix": "bench", "partitioning": "date=YYYY-MM-DD"},
            "schema": {
                "numeric_features": numeric,
                "categorical_features": categorical,
                "target": "y",
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": ["roc_auc"],
            "gate": {"champion_metric": "roc_auc"},
            "validation": {"suite": "bench"},
            "drift": {"drift_share": 0.3},
        },
        Path("bench.yaml"),
    )


class PeakRss:
    """Peak RSS of this process while the block runs (sampled in a thread)."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def scipy_ks_chi2(reference, current) -> dict[str, tuple[float, bool]]:
    """p-values: KS per numeric column, chi-square on counts per categorical (drift: p < 0.05)."""
    import numpy as np
    from scipy import stats

    out = {}
    for column in reference.columns:
        if column.startswith("num_"):
            p = stats.ks_2samp(reference[column].to_numpy(), current[column].to_numpy()).pvalue
        else:
            levels = sorted(set(reference[column].unique()) | set(current[column].unique()))
            table = np.array(
                [
                    reference[column].value_counts().reindex(levels, fill_value=0).to_numpy(),
                    current[column].value_counts().reindex(levels, fill_value=0).to_numpy(),
                ]
            )
            p = stats.chi2_contingency(table).pvalue
        out[column] = (float(p), bool(p < 0.05))
    return out


def scipy_wasserstein_js(reference, current) -> dict[str, tuple[float, bool]]:
    """Distances: Wasserstein normed by reference std; Jensen-Shannon (drift: >= 0.1)."""
    from scipy import stats
    from scipy.spatial import distance

    out = {}
    for column in reference.columns:
        if column.startswith("num_"):
            ref = reference[column].to_numpy(dtype=float)
            score = stats.wasserstein_distance(ref, current[column].to_numpy(dtype=float))
            score /= ref.std()
        else:
            levels = sorted(set(reference[column].unique()) | set(current[column].unique()))
            p = reference[column].value_counts(normalize=True).reindex(levels, fill_value=0)
            q = current[column].value_counts(normalize=True).reindex(levels, fill_value=0)
            score = float(distance.jensenshannon(p.to_numpy(), q.to_numpy()))
        out[column] = (float(score), bool(score >= 0.1))
    return out


def worker(variant: str, rows: int) -> dict[str, Any]:
    """Run one variant in this process and return its figures."""
    import tempfile

    import psutil

    started = time.perf_counter()
    reference = make_frame(rows, seed=1, shifted=False)
    current = make_frame(rows, seed=2, shifted=True)
    data_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if variant.startswith("evidently"):
        import evidently  # noqa: F401
        import evidently.presets  # noqa: F401

        from trainyard.drift import evidently
    else:
        import scipy.spatial  # noqa: F401
        import scipy.stats  # noqa: F401
    import_seconds = time.perf_counter() - started

    rss_before = psutil.Process().memory_info().rss
    html_seconds = html_bytes = None
    with PeakRss() as peak:
        started = time.perf_counter()
        if variant.startswith("evidently"):
            spec = bench_spec()
            cap = int(variant.rsplit("_", 1)[1]) if "sampled" in variant else None
            ref = evidently.sample_rows(reference, cap, spec.drift.sample_seed)
            cur = evidently.sample_rows(current, cap, spec.drift.sample_seed)
            result, snapshot = evidently.run_evidently(spec, ref, cur)
            check_seconds = time.perf_counter() - started
            flags = {c.column: (c.score, c.drifted) for c in result.columns}
            started_html = time.perf_counter()
            with tempfile.TemporaryDirectory() as workdir:
                path = Path(workdir) / "report.html"
                snapshot.save_html(str(path))
                html_bytes = path.stat().st_size
            html_seconds = time.perf_counter() - started_html
        else:
            check = scipy_ks_chi2 if variant == "scipy_ks_chi2" else scipy_wasserstein_js
            flags = check(reference, current)
            check_seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "rows_reference": rows,
        "rows_current": rows,
        "columns": NUMERIC + CATEGORICAL,
        "data_generation_s": round(data_seconds, 2),
        "import_s": round(import_seconds, 2),
        "check_s": round(check_seconds, 2),
        "html_s": round(html_seconds, 2) if html_seconds is not None else None,
        "html_mb": round(html_bytes / 1e6, 2) if html_bytes else None,
        "rss_before_check_mb": round(rss_before / 2**20),
        "peak_rss_during_check_mb": round(peak.peak / 2**20),
        "check_increment_mb": round((peak.peak - rss_before) / 2**20),
        "drifted_columns": sorted(c for c, (_, drifted) in flags.items() if drifted),
        "expected_drifted": sorted(SHIFTED),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows)))
        return 0

    results = []
    for variant in args.variants.split(","):
        print(f"{variant}: running on {args.rows:,} x 20 vs {args.rows:,} ...", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--worker", variant, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            results.append({"variant": variant, "error": done.stderr[-1000:]})
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(figures)
        print(
            f"  check {figures['check_s']} s (+ html {figures['html_s']} s), import "
            f"{figures['import_s']} s, peak RSS {figures['peak_rss_during_check_mb']} MB "
            f"(+{figures['check_increment_mb']} MB over the loaded data), flags "
            f"{figures['drifted_columns']}",
            flush=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "drift_check.json"
    import psutil

    machine = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
