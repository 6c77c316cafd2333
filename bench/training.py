"""Benchmark: distributed tuning (Spark ML under hyperopt.Trials) beside a single-node baseline, in one run.

    .venv/bin/python bench/training.py --rows 300000

Builds the medallion and the features on generated data (untimed), then times:
- the training job as it was: every trial fits the whole model pipeline (features and classifier);
- the training job: the features pipeline fitted once, each trial fitting the classifier alone;
- the single-node engine as baseline: scikit-learn logistic regression on a sample that fits in
  memory, tuned with hyperopt `SparkTrials` (trials run in parallel on the Spark executors).
Prints the median trial time of the two Spark ML jobs and their ratio (target <= 0.5, with the same
test AUC within 0.005), trials per minute, wall time and the test AUC of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import mlflow

from lakeforge import training
from lakeforge.config import SearchDimension, Settings
from lakeforge.config.use_case import SingleNode
from workspace import churn_workspace


def single_node_settings(settings: Settings, sample_rows: int, evals: int) -> Settings:
    """The same use case on the single-node engine: scikit-learn logistic regression, `SparkTrials`."""
    config = settings.use_case.training.model_copy(
        update={
            "model_name": f"{settings.use_case.training.model_name}_single_node",
            "engine": "single_node",
            "single_node": SingleNode(sample_rows=sample_rows, parallelism=2),
            "search_space": {"C": SearchDimension(kind="loguniform", low=0.01, high=100.0)},
            "fixed_params": {"max_iter": 200},
            "max_evals": evals,
        }
    )
    return settings.model_copy(update={"use_case": settings.use_case.model_copy(update={"training": config})})


class WholePipelineTrials(training.TrialData):
    """The trials as they were: each fits the whole model pipeline, features included, on the raw windows."""

    def __init__(self, config, data) -> None:
        self.data = data

    def fit_and_evaluate(self, config, params):
        return training.fit_and_evaluate(config, params, self.data, self.data.train, self.data.validation)[1]

    def release(self) -> None:
        pass


def timed_training(spark, settings: Settings) -> tuple[training.TrainResult, float, float]:
    """Run the training job; its result, wall time and median trial time (from the trials' logged durations)."""
    started = time.perf_counter()
    result = training.run(spark, settings)
    wall = time.perf_counter() - started
    trials = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'", output_format="list")
    return result, wall, statistics.median(run.data.metrics["duration_seconds"] for run in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="orders in the history batch")
    parser.add_argument("--sample-rows", type=int, default=200_000, help="rows of the single-node sample")
    parser.add_argument("--home", help="working folder (default: a new temporary folder, removed afterwards)")
    args = parser.parse_args()

    with churn_workspace("train", args.rows, args.home) as (spark, settings):
        config = settings.use_case.training

        features_once = training.TrialData
        training.TrialData = WholePipelineTrials
        try:
            before, before_seconds, before_trial = timed_training(spark, settings)
        finally:
            training.TrialData = features_once
        result, spark_seconds, trial_seconds = timed_training(spark, settings)
        data = training.prepare(spark, settings, config)
        train_rows = data.train.count() + data.validation.count()
        started = time.perf_counter()
        single = training.run(spark, single_node_settings(settings, args.sample_rows, result.trials))
        single_seconds = time.perf_counter() - started
        sample = min(args.sample_rows, train_rows)

        print(f"training rows (train + validation)       {train_rows:>12,}")
        print(f"before: every trial fits the whole pipeline: trials {before.trials}, wall {before_seconds:.1f} s")
        print(f"before: median trial time                {before_trial:>10.2f} s")
        print(f"before: test AUC-ROC                     {before.test_metrics['auc_roc']:>12.4f}")
        print(f"now: median trial time (features once)   {trial_seconds:>10.2f} s")
        print(f"ratio median trial now / before          {trial_seconds / before_trial:>12.2f}   (target <= 0.5)")
        auc_gap = abs(result.test_metrics["auc_roc"] - before.test_metrics["auc_roc"])
        print(f"test AUC-ROC difference now / before    {auc_gap:>12.4f}   (target <= 0.005)")
        print(f"spark ML tuning job: trials              {result.trials:>12}")
        print(f"spark ML tuning job: wall time           {spark_seconds:>10.1f} s")
        print(f"spark ML tuning job: trials per minute   {result.trials / spark_seconds * 60:>12.2f}")
        print(f"spark ML tuning job: test AUC-ROC        {result.test_metrics['auc_roc']:>12.4f}")
        print(f"single node (sklearn, SparkTrials): rows ~{sample:>11,} per window sample")
        print(f"single node: trials                      {single.trials:>12}")
        print(f"single node: wall time                   {single_seconds:>10.1f} s")
        print(f"single node: trials per minute           {single.trials / single_seconds * 60:>12.2f}")
        print(f"single node: test AUC-ROC (sampled test) {single.test_metrics['auc_roc']:>12.4f}")
        print(f"ratio wall time spark / single node      {spark_seconds / single_seconds:>12.2f}")


if __name__ == "__main__":
    main()
