"""`lakeforge simulate`: the whole loop over simulated days, and its timeline.

Each simulated day lands one new daily batch of generated data (with a named drift scenario from a
given day, if asked) and runs the daily pipeline on it as a scheduled `lakeforge run all` would: the
medallion and features, then scoring and monitoring with the champion, and a retrain only when the
monitor asks for one. A fresh home first gets the history batch and the bootstrap run (day 0).

The timeline has one row per day: the champion after the day, the version that scored, the drifted
share, the prediction PSI, the decision and why, what was done, and the day's wall time; once the
whole stretch has run, each scoring date's AUC wherever its labels have arrived by then. It goes to
the Delta table `ops.simulation_timeline` (one row per scoring date), a CSV and a PNG under
`$LAKEFORGE_HOME/reports/simulation/<use case>/`.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeforge import datagen, pipeline, tables
from lakeforge.config import Settings
from lakeforge.errors import LakeforgeError

log = logging.getLogger("lakeforge.simulation")

TIMELINE_TABLE = "simulation_timeline"


@dataclass(frozen=True)
class SimulatedDay:
    day: int
    batch: int
    scoring_date: dt.date
    drifting: bool
    scored_by: str
    champion: str
    drifted_share: float
    prediction_psi: float | None
    action: str
    reasons: str
    held_back: str
    outcome: str
    seconds: float
    auc_roc: float | None = None


@dataclass(frozen=True)
class Timeline:
    days: list[SimulatedDay]
    table: str
    csv: Path
    plot: Path


def landed_batches(settings: Settings) -> list[int]:
    """The batch numbers already generated for the use case's first source."""
    first_source = next(iter(settings.use_case.sources))
    folder = Path(settings.env.path("landing"), settings.use_case.name, first_source)
    return sorted(int(path.name.removeprefix("batch_")) for path in folder.glob("batch_*") if path.is_dir())


def _day_row(
    settings: Settings, day: int, batch: int, drifting: bool, state: pipeline.RunState, seconds: float
) -> SimulatedDay:
    result = state.monitored
    if result is None:
        raise LakeforgeError("the daily run did not monitor: the use case needs scoring and monitoring to simulate")
    decision = result.decision
    champion = str(pipeline.champion_version(settings) or result.model_version)
    return SimulatedDay(
        day,
        batch,
        result.scoring_date,
        drifting,
        result.model_version,
        champion,
        result.drifted_share,
        result.prediction_psi,
        decision.action,
        "; ".join(decision.reasons),
        decision.held_back or "",
        result.triggered,
        round(seconds, 1),
    )


def simulate(
    spark: SparkSession,
    settings: Settings,
    days: int,
    rows: int,
    seed: int,
    scenario: str | None = None,
    drift_from: int | None = None,
    record_delay_days: int | None = None,
) -> Timeline:
    """Run `days` simulated days after what has landed (the history and a bootstrap run first, if nothing
    has); the scenario starts on simulated day `drift_from` (1 is the first new day). `record_delay_days`
    shortens the generator's label delay (see `datagen.BatchSpec`)."""
    if settings.use_case.monitoring is None or settings.use_case.scoring is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' has no scoring and monitoring: nothing to simulate")
    datagen.check_scenario(settings.use_case, scenario)
    landing = settings.env.path("landing")
    landed = landed_batches(settings)
    simulated: list[SimulatedDay] = []
    if not landed:
        datagen.generate_batch(
            spark, settings.use_case, landing, datagen.BatchSpec(rows, seed, 0, record_delay_days=record_delay_days)
        )
        started = time.monotonic()
        state = pipeline.run_steps(spark, settings, ["all"])
        simulated.append(_day_row(settings, 0, 0, False, state, time.monotonic() - started))
        landed = [0]
    first_batch = landed[-1] + 1
    drift_batch = None if drift_from is None else first_batch + drift_from - 1
    for day in range(1, days + 1):
        batch = first_batch + day - 1
        spec = datagen.BatchSpec(rows, seed, batch, scenario, drift_batch or 1, record_delay_days)
        datagen.generate_batch(spark, settings.use_case, landing, spec)
        started = time.monotonic()
        state = pipeline.run_steps(spark, settings, ["all"])
        drifting = scenario is not None and spec.drifting(scenario)
        row = _day_row(settings, day, batch, drifting, state, time.monotonic() - started)
        log.info("simulate: day %d: %s", day, row)
        simulated.append(row)
    simulated = with_auc(spark, settings, simulated)
    return write_timeline(spark, settings, simulated)


def with_auc(spark: SparkSession, settings: Settings, simulated: list[SimulatedDay]) -> list[SimulatedDay]:
    """Each day's AUC-ROC of the version that scored it, where its labels have arrived by now."""
    quality = settings.table("ops", settings.use_case.monitoring.quality_table)
    if not tables.table_exists(spark, quality):
        return simulated
    dates = [day.scoring_date for day in simulated]
    measured = tables.read_table(spark, quality).where(F.col("scoring_date").isin(dates))
    auc = {(r.scoring_date, r.model_version): r.auc_roc for r in measured.collect()}
    return [replace(day, auc_roc=auc.get((day.scoring_date, day.scored_by))) for day in simulated]


TIMELINE_SCHEMA = (
    "day int, batch int, scoring_date date, drifting boolean, scored_by string, champion string, "
    "drifted_share double, prediction_psi double, action string, reasons string, held_back string, "
    "outcome string, seconds double, auc_roc double"
)


def write_timeline(spark: SparkSession, settings: Settings, simulated: list[SimulatedDay]) -> Timeline:
    folder = Path(settings.env.path("reports")) / "simulation" / settings.use_case.name
    folder.mkdir(parents=True, exist_ok=True)
    table = settings.table("ops", TIMELINE_TABLE)
    tables.ensure_schema(spark, settings.schema("ops"))
    rows = spark.createDataFrame([tuple(asdict(day).values()) for day in simulated], TIMELINE_SCHEMA)
    tables.upsert(rows.withColumn("use_case", F.lit(settings.use_case.name)), table, ["use_case", "scoring_date"])
    csv_path = folder / "timeline.csv"
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(SimulatedDay.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(day) for day in simulated)
    plot = plot_timeline(simulated, settings, folder / "timeline.png")
    return Timeline(simulated, table, csv_path, plot)


def plot_timeline(simulated: list[SimulatedDay], settings: Settings, path: Path) -> Path:
    """Three panels over the scoring dates: drift, quality where labels exist, the champion and decisions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    policy = settings.use_case.monitoring.retraining
    dates = [day.scoring_date for day in simulated]
    figure, (drift_axes, auc_axes, model_axes) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    drift_axes.plot(dates, [d.drifted_share for d in simulated], marker="o", label="drifted share of features")
    drift_axes.plot(dates, [d.prediction_psi or 0.0 for d in simulated], marker="s", label="prediction PSI")
    if policy.max_drifted_share is not None:
        drift_axes.axhline(policy.max_drifted_share, color="C0", linestyle=":", label="max drifted share")
    if policy.max_prediction_psi is not None:
        drift_axes.axhline(policy.max_prediction_psi, color="C1", linestyle=":", label="max prediction PSI")
    drift_axes.set(ylabel="drift", title=f"lakeforge simulate: {settings.use_case.name}")
    drift_axes.legend(loc="upper left", fontsize="small")
    labelled = [d for d in simulated if d.auc_roc is not None]
    for version in sorted({d.scored_by for d in labelled}, key=int):
        points = [d for d in labelled if d.scored_by == version]
        auc_axes.plot([d.scoring_date for d in points], [d.auc_roc for d in points], marker="o", label=f"v{version}")
    if policy.min_auc_roc is not None:
        auc_axes.axhline(policy.min_auc_roc, color="grey", linestyle=":", label="min AUC-ROC")
    auc_axes.set(ylabel="AUC-ROC (labelled dates)")
    auc_axes.legend(loc="lower left", fontsize="small")
    model_axes.step(dates, [int(d.champion) for d in simulated], where="post", label="champion version")
    for action, color in (("alert", "orange"), ("retrain", "red")):
        marked = [d for d in simulated if d.action == action]
        model_axes.scatter(
            [d.scoring_date for d in marked], [int(d.scored_by) for d in marked], color=color, label=action
        )
    model_axes.set(ylabel="model version", xlabel="scoring date")
    model_axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    model_axes.legend(loc="upper left", fontsize="small")
    drift_start = next((d.scoring_date for d in simulated if d.drifting), None)
    for axes in (drift_axes, auc_axes, model_axes):
        if drift_start:
            axes.axvline(drift_start, color="purple", linestyle="--", alpha=0.6)
        axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
