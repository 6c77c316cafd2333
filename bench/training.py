"""Benchmark: distributed tuning (Spark ML under hyperopt.Trials) beside a single-node baseline, in one run.

    .venv/bin/python bench/training.py --rows 2000000

Builds the medallion and the features on generated data (untimed), then times:
- the training job: hyperopt `Trials` over Spark ML fits, refit, test evaluation, MLflow logging;
- a single-node baseline: scikit-learn logistic regression on a sample that fits in memory, tuned
  with hyperopt `SparkTrials` (trials run in parallel on the Spark executors).
Prints trials per minute, wall time and the test AUC of both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hyperopt import STATUS_OK, SparkTrials, fmin, hp, space_eval, tpe

from lakeforge import bronze, feature_store, gold, modeling, silver, training
from lakeforge.config import Settings, load_environment, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.session import build_spark


def single_node_baseline(data: training.PreparedData, settings: Settings, sample_rows: int, evals: int) -> dict:
    """scikit-learn on a pandas sample of train/validation/test, tuned with SparkTrials."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    config = settings.use_case.training
    columns = [*config.numeric_features, *config.categorical_features, modeling.LABEL]

    def sample(rows):
        total = rows.count()
        return rows.select(*columns).sample(fraction=min(1.0, sample_rows / max(total, 1)), seed=1).toPandas()

    train, validation, test = sample(data.train), sample(data.validation), sample(data.test)

    def model(c: float):
        prepare = ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), config.numeric_features),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), config.categorical_features),
            ]
        )
        return make_pipeline(prepare, LogisticRegression(C=c, max_iter=200))

    def objective(params):
        fitted = model(params["C"]).fit(train.drop(columns=modeling.LABEL), train[modeling.LABEL])
        auc = roc_auc_score(
            validation[modeling.LABEL], fitted.predict_proba(validation.drop(columns=modeling.LABEL))[:, 1]
        )
        return {"loss": -auc, "status": STATUS_OK}

    space = {"C": hp.loguniform("C", np.log(0.01), np.log(100.0))}
    started = time.perf_counter()
    best = fmin(objective, space, algo=tpe.suggest, max_evals=evals, trials=SparkTrials(parallelism=2),
                rstate=np.random.default_rng(config.seed), show_progressbar=False)  # fmt: skip
    params = space_eval(space, best)
    both = pd.concat([train, validation])
    fitted = model(params["C"]).fit(both.drop(columns=modeling.LABEL), both[modeling.LABEL])
    auc = roc_auc_score(test[modeling.LABEL], fitted.predict_proba(test.drop(columns=modeling.LABEL))[:, 1])
    return {"seconds": time.perf_counter() - started, "auc": auc, "rows": len(train) + len(validation)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="orders in the history batch")
    parser.add_argument("--sample-rows", type=int, default=200_000, help="rows of the single-node sample")
    parser.add_argument("--home", help="working folder (default: a new temporary folder, removed afterwards)")
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="lakeforge-bench-train-"))
    os.environ["LAKEFORGE_HOME"] = str(home)
    env = load_environment("local")
    settings = Settings(use_case=load_use_case("churn"), env=env)
    spark = build_spark(env, "lakeforge-bench-training")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        generate_batch(spark, settings.use_case, env.path("landing"), BatchSpec(args.rows, 7, 0))
        for step in (bronze.run, silver.run, gold.run, feature_store.run):
            step(spark, settings)
        config = settings.use_case.training

        started = time.perf_counter()
        result = training.run(spark, settings)
        spark_seconds = time.perf_counter() - started
        data = training.prepare(spark, settings, config)
        train_rows = data.train.count() + data.validation.count()
        baseline = single_node_baseline(data, settings, args.sample_rows, result.trials)

        print(f"training rows (train + validation)       {train_rows:>12,}")
        print(f"spark ML tuning job: trials              {result.trials:>12}")
        print(f"spark ML tuning job: wall time           {spark_seconds:>10.1f} s")
        print(f"spark ML tuning job: trials per minute   {result.trials / spark_seconds * 60:>12.2f}")
        print(f"spark ML tuning job: test AUC-ROC        {result.test_metrics['auc_roc']:>12.4f}")
        print(f"single node (sklearn, SparkTrials): rows {baseline['rows']:>12,}")
        print(f"single node: wall time                   {baseline['seconds']:>10.1f} s")
        print(f"single node: trials per minute           {result.trials / baseline['seconds'] * 60:>12.2f}")
        print(f"single node: test AUC-ROC (sampled test) {baseline['auc']:>12.4f}")
        print(f"ratio wall time spark / single node      {spark_seconds / baseline['seconds']:>12.2f}")
    finally:
        spark.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
