"""The setup the benchmarks share: a throwaway LAKEFORGE_HOME with generated churn data through features."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakeforge import bronze, feature_store, gold, silver
from lakeforge.config import Settings, load_environment, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.platforms import Platform


@contextmanager
def churn_workspace(name: str, rows: int, home: str | None = None, **training_changes) -> Iterator[tuple]:
    """Yield (spark, settings) after generating `rows` orders and building the medallion and features
    (untimed). The folder is removed afterwards unless `home` was given."""
    folder = Path(home or tempfile.mkdtemp(prefix=f"lakeforge-bench-{name}-"))
    os.environ["LAKEFORGE_HOME"] = str(folder)
    env = load_environment("local")
    use_case = load_use_case("churn")
    if training_changes:
        use_case = use_case.model_copy(update={"training": use_case.training.model_copy(update=training_changes)})
    settings = Settings(use_case=use_case, env=env)
    spark = Platform(env).session(f"lakeforge-bench-{name}")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        generate_batch(spark, settings.use_case, env.path("landing"), BatchSpec(rows, 7, 0))
        for step in (bronze.run, silver.run, gold.run, feature_store.run):
            step(spark, settings)
        yield spark, settings
    finally:
        spark.stop()
        if not home:
            shutil.rmtree(folder, ignore_errors=True)
