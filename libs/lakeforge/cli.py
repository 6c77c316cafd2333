"""The `lakeforge` command: generate demo data, run pipeline steps, query tables with SQL."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from lakeforge import __version__
from lakeforge.config import available, conf_dir, load_environment, load_settings, load_use_case
from lakeforge.errors import LakeforgeError, ModelRejected, ReproductionMismatch, StaleFeatures
from lakeforge.logs import configure_logging
from lakeforge.pipeline import STEP_ALIASES, STEPS, StepOptions, run_steps

log = logging.getLogger("lakeforge")

# Exit codes: 0 done, 1 a failure (one `error:` line), 2 a usage error (argparse), and two a scheduler
# may branch on: the gate kept the champion (`gate.fail_on_reject`), a feature table is stale.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MODEL_REJECTED = 3
EXIT_STALE_FEATURES = 4


def exit_code(error: LakeforgeError) -> int:
    """The exit code of a failure: its own for the two a scheduler acts on, 1 for every other."""
    if isinstance(error, ModelRejected):
        return EXIT_MODEL_REJECTED
    if isinstance(error, StaleFeatures):
        return EXIT_STALE_FEATURES
    return EXIT_FAILURE


def _cmd_generate(args: argparse.Namespace) -> None:
    from lakeforge.datagen import BatchSpec, check_scenario, generate_batch, generator
    from lakeforge.platforms import Platform

    settings = load_settings(args.use_case, args.env, overrides=args.set)
    use_case, env = settings.use_case, settings.env
    generator(use_case)
    check_scenario(use_case, args.scenario)
    spark = Platform(env).session("lakeforge-generate")
    for batch in range(args.batch, args.batch + args.batches):
        spec = BatchSpec(args.rows, args.seed, batch, args.scenario, args.drift_from, args.record_delay_days)
        manifest = generate_batch(spark, use_case, env.path("landing"), spec)
        for source, counts in manifest.items():
            log.info("generated %s batch %d: %s", source, batch, counts)


def _cmd_run(args: argparse.Namespace) -> None:
    from lakeforge.platforms import Platform
    from lakeforge.session import write_spark_defaults

    settings = load_settings(args.use_case, args.env, overrides=args.set)
    spark = Platform(settings.env).session(f"lakeforge-{'-'.join(args.steps)}")
    options = StepOptions(full=args.full, scoring_date=args.date, training_job_id=args.training_job_id)
    run_steps(spark, settings, args.steps, options)
    platform = Platform(settings.env)
    if platform.writes_spark_defaults:
        from lakeforge.config import lakeforge_home

        write_spark_defaults(platform.spark_conf("lakeforge-sql"), lakeforge_home() / "spark-conf")


def _cmd_simulate(args: argparse.Namespace) -> None:
    from lakeforge import simulation
    from lakeforge.datagen import check_scenario, generator, scenarios
    from lakeforge.platforms import Platform

    settings = load_settings(args.use_case, args.env, overrides=args.set)
    generator(settings.use_case)
    scenario = args.scenario
    if args.drift_from is not None and scenario is None:
        offered = sorted(scenarios(settings.use_case))
        if len(offered) != 1:
            raise LakeforgeError(
                f"--drift-from needs --scenario: use case '{args.use_case}' offers {offered or 'none'}"
            )
        scenario = offered[0]
    if scenario is not None and args.drift_from is None:
        raise LakeforgeError(f"--scenario {scenario} needs --drift-from DAY (1 is the first simulated day)")
    check_scenario(settings.use_case, scenario)
    spark = Platform(settings.env).session("lakeforge-simulate")
    timeline = simulation.simulate(
        spark, settings, args.days, args.rows, args.seed, scenario, args.drift_from, args.record_delay_days
    )
    rows = [
        (
            d.day,
            d.scoring_date,
            d.scored_by,
            d.champion,
            "-" if d.auc_roc is None else f"{d.auc_roc:.3f}",
            f"{d.drifted_share:.0%}",
            "-" if d.prediction_psi is None else f"{d.prediction_psi:.3f}",
            d.action,
            d.held_back or d.outcome,
            f"{d.seconds:.0f}",
        )
        for d in timeline.days
    ]
    header = ["day", "scoring date", "scored by", "champion", "AUC", "drifted", "pred PSI", "action", "why", "s"]
    _print_table(header, rows)
    print(f"timeline: {timeline.table}, {timeline.csv}, {timeline.plot}")


def _cmd_status(args: argparse.Namespace) -> None:
    from lakeforge import status
    from lakeforge.platforms import Platform

    settings = load_settings(args.use_case, args.env, overrides=args.set)
    spark = Platform(settings.env).session("lakeforge-status")
    print("\n".join(status.render(status.collect(spark, settings))))


def _cmd_init_use_case(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lakeforge.onboarding import init_use_case
    from lakeforge.platforms import Platform

    env = load_environment(args.env)
    spark = Platform(env).session("lakeforge-init-use-case")
    landing = env.path("landing") if args.land else None
    written = init_use_case(spark, args.name, Path(args.source_dir), conf_dir(), landing, args.force)
    print(f"wrote {written}: check the lines marked GUESS and TODO")
    if landing:
        print(
            f"copied the files to {landing}/{args.name}/; next: lakeforge run ingest silver gold --use-case {args.name}"
        )
    else:
        print(f"next: copy each source folder to {env.path('landing')}/{args.name}/ (or rerun with --land)")


def _cmd_use_cases(args: argparse.Namespace) -> None:
    folder = conf_dir()
    rows = [(name, load_use_case(name).description) for name in available("usecases")]
    _print_table(["use case", "description"], rows)
    print(f"environments: {', '.join(available('envs'))} (from {folder})")


def _cmd_sql(args: argparse.Namespace) -> None:
    from lakeforge.platforms import Platform

    spark = Platform(load_environment(args.env)).session("lakeforge-sql")
    spark.sql(args.query).show(args.limit, truncate=False)


def _cmd_features(args: argparse.Namespace) -> None:
    from lakeforge import feature_store
    from lakeforge.platforms import Platform

    if args.action == "describe" and not args.name:
        args.usage_error("features describe needs the name of a feature table (`features list` names them)")
    settings = load_settings(args.use_case, args.env)
    spark = Platform(settings.env).session("lakeforge-features")
    if args.action == "list":
        rows = [
            (
                s.name,
                s.table_name,
                s.properties.get("window_end", "-"),
                s.properties.get("refreshed_at", "never"),
                "-" if s.age_hours is None else f"{s.age_hours:.1f}",
                f"{s.max_age_hours:g}",
                "STALE" if s.stale else "ok",
            )
            for s in feature_store.statuses(spark, settings)
        ]
        _print_table(["feature table", "table", "window end", "refreshed at", "age h", "max age h", "freshness"], rows)
        return
    status = feature_store.status(spark, settings, args.name)
    print(f"{status.name} ({status.table_name}): {'STALE' if status.stale else 'fresh'}")
    _print_table(["property", "value"], sorted(status.properties.items()))


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from lakeforge import training
    from lakeforge.platforms import Platform

    settings = load_settings(args.use_case, args.env)
    spark = Platform(settings.env).session("lakeforge-reproduce")
    comparison = training.reproduce(spark, settings, args.run_id)
    rows = [
        (m, f"{v['logged']:.6f}", f"{v['reproduced']:.6f}", f"{v['reproduced'] - v['logged']:+.2e}")
        for m, v in comparison.items()
    ]
    _print_table(["test metric", "logged", "reproduced", "difference"], rows)
    worst = max(abs(v["reproduced"] - v["logged"]) for v in comparison.values())
    if worst > args.tolerance:
        raise ReproductionMismatch(f"metrics differ by up to {worst:.2e}, more than --tolerance {args.tolerance}")


def _print_table(header: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakeforge",
        description=__doc__,
        epilog=f"exit codes: 0 done, {EXIT_FAILURE} failed (one `error:` line), {EXIT_USAGE} usage error, "
        f"{EXIT_MODEL_REJECTED} the gate kept the champion (gate.fail_on_reject), {EXIT_STALE_FEATURES} a feature "
        "table is stale. `lakeforge use-cases` lists the use cases and environments in conf/.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and a trace with an error")
    parser.add_argument("--version", action="version", version=f"lakeforge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Options every command takes; `-v` also after the command (SUPPRESS keeps the top-level value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    common.add_argument(
        "--env", default="local", help="environment overlay in conf/envs/ (default: local; see `lakeforge use-cases`)"
    )
    use_case = argparse.ArgumentParser(add_help=False)
    use_case.add_argument("--use-case", required=True, help="use case in conf/usecases/ (see `lakeforge use-cases`)")
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SCOPE.KEY=VALUE",
        help="override a config value, e.g. env.catalog=main or use_case.training.max_evals=3 (repeatable)",
    )
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=7, help="random seed of the generated data (default: 7)")
    seed.add_argument("--rows", type=_positive, default=100_000, help="rows of the main feed in the history")
    seed.add_argument(
        "--record-delay-days",
        type=_not_negative,
        metavar="DAYS",
        help="labels are recorded 0 to DAYS days after their event (default: the generator's delay, weeks for churn)",
    )

    def command(name: str, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common, *parents])
        sub.set_defaults(usage_error=sub.error)
        return sub

    generate = command("generate-data", "write raw landing files with realistic defects", use_case, seed, overrides)
    generate.add_argument("--batch", type=_not_negative, default=0, help="first batch: 0 is history, 1.. new days")
    generate.add_argument("--batches", type=_positive, default=1, help="how many consecutive batches to write")
    generate.add_argument("--scenario", help="a named drift scenario of the use case's generator (churn: price_rise)")
    generate.add_argument(
        "--drift-from", type=_positive, default=1, help="with --scenario: the first batch the scenario changes"
    )
    generate.set_defaults(handler=_cmd_generate)

    simulate = command(
        "simulate",
        "land one generated day at a time, run the daily pipeline on each, write the timeline",
        use_case,
        seed,
        overrides,
    )
    simulate.add_argument("--days", type=_positive, required=True, help="how many new days to simulate")
    simulate.add_argument(
        "--drift-from", type=_positive, help="the simulated day (1 is the first) the drift scenario starts"
    )
    simulate.add_argument("--scenario", help="the drift scenario (default: the use case's only one)")
    simulate.set_defaults(handler=_cmd_simulate)

    run = command("run", "run pipeline steps in order (`all`: the daily run)", use_case, overrides)
    run.add_argument(
        "steps",
        nargs="+",
        choices=[*STEPS, *STEP_ALIASES, "all"],
        metavar="STEP",
        help=f"{', '.join(STEPS)} or all (every step but maintain; `validate` is the old name of `gate`)",
    )
    run.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        help="score and monitor: the scoring date (default: the newest feature date; monitor: the newest scored)",
    )
    run.add_argument("--training-job-id", type=int, help="monitor on Databricks: the training job to trigger")
    run.add_argument("--full", action="store_true", help="features: recompute every time window, not only new ones")
    run.set_defaults(handler=_cmd_run)

    reproduce = command(
        "reproduce", "rebuild a run's training set from its Delta versions, refit and compare", use_case
    )
    reproduce.add_argument("run_id", help="the MLflow run id of a training run (`mlflow ui`, or the registry)")
    reproduce.add_argument("--tolerance", type=float, default=1e-6, help="largest metric difference accepted")
    reproduce.set_defaults(handler=_cmd_reproduce)

    features = command("features", "list feature tables or describe one: lineage and freshness", use_case)
    features.add_argument("action", choices=["list", "describe"], help="list every table, or describe one")
    features.add_argument("name", nargs="?", help="feature table (for describe)")
    features.set_defaults(handler=_cmd_features)

    sql = command("sql", "run Spark SQL against the configured metastore and print a table")
    sql.add_argument("query", help="one Spark SQL statement, e.g. 'SHOW TABLES IN gold'")
    sql.add_argument("--limit", type=_positive, default=50, help="most rows printed (default: 50)")
    sql.set_defaults(handler=_cmd_sql)

    status = command(
        "status",
        "where a use case stands: tables and their Delta versions, feature freshness, models, the last decision",
        use_case,
        overrides,
    )
    status.set_defaults(handler=_cmd_status)

    init = command("init-use-case", "write a starter use-case config from a folder of files, one subfolder per source")
    init.add_argument("name", help="the new use case's name (a plain identifier): conf/usecases/NAME.yml")
    init.add_argument("--from", dest="source_dir", required=True, help="the folder holding one folder per source")
    init.add_argument("--land", action="store_true", help="also copy the files into the landing folder")
    init.add_argument("--force", action="store_true", help="replace conf/usecases/NAME.yml if it exists")
    init.set_defaults(handler=_cmd_init_use_case)

    use_cases = command("use-cases", "list the use cases and environments in conf/")
    use_cases.set_defaults(handler=_cmd_use_cases)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (see `EXIT_*`)."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    try:
        args.handler(args)
    except LakeforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # a Spark or library error a user can meet (a bad query): one line, not a trace
        if args.verbose:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {first_line} (-v shows the trace)", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
