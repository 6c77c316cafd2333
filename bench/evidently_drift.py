"""Evidently 0.7 drift on pandas, run by bench/scoring.py in its own process so its peak memory is its own.

    python bench/evidently_drift.py '{"reference": ..., "current": ..., "rows": N, ...}'

Prints one JSON line: seconds (load + report) and the process's peak resident memory in MB.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import pyarrow.dataset as ds
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift


def main(spec: dict) -> None:
    started = time.perf_counter()
    # Read only the rows asked for, so the peak memory is that of `rows` rows, not of the whole file.
    reference = ds.dataset(spec["reference"]).head(spec["rows"]).to_pandas()
    current = ds.dataset(spec["current"]).head(spec["rows"]).to_pandas()
    definition = DataDefinition(numerical_columns=spec["numeric"], categorical_columns=spec["categorical"])
    thresholds = spec["thresholds"]
    metrics = [
        ValueDrift(column=column, method=test, threshold=thresholds[test])
        for kind in ("numeric", "categorical")
        for column in spec[kind]
        for test in spec[f"{kind}_tests"]
    ]
    Report(metrics).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - started, "max_rss_mb": peak}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
