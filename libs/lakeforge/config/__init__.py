"""Typed, validated configuration: one YAML file per use case plus one overlay per environment.

- `fields`: the strict base model and the types names must satisfy (identifiers, table references);
- `use_case`: the use-case schema (`UseCase`, `conf/usecases/*.yml`);
- `environment`: the environment schema (`Environment`, `conf/envs/*.yml`);
- `settings`: the two together, as every job gets them (`Settings`);
- `loading`: YAML, overlays, `--set` overrides and errors naming the file and every wrong key.

The package imports no stage and no Great Expectations; the names below are its public face.
"""

from lakeforge.config.environment import (
    Environment,
    Paths,
    Retraining,
    Schemas,
    SparkSettings,
    Tracking,
    lakeforge_home,
)
from lakeforge.config.fields import (
    IDENTIFIER_PATTERN,
    Identifier,
    check_identifier,
    check_table_reference,
    resolve_callable,
)
from lakeforge.config.loading import (
    available,
    conf_dir,
    load_environment,
    load_settings,
    load_use_case,
    split_overrides,
    use_case_path,
)
from lakeforge.config.settings import Settings
from lakeforge.config.use_case import (
    UNCAST_TYPES,
    Expectation,
    FeatureDrift,
    Features,
    FeatureTable,
    Gate,
    GoldTable,
    Labels,
    Monitoring,
    RetrainingPolicy,
    Scoring,
    SearchDimension,
    Source,
    TextPipeline,
    TimeSplit,
    Training,
    UseCase,
)

__all__ = [
    "IDENTIFIER_PATTERN",
    "UNCAST_TYPES",
    "Environment",
    "Expectation",
    "FeatureDrift",
    "FeatureTable",
    "Features",
    "Gate",
    "GoldTable",
    "Identifier",
    "Labels",
    "Monitoring",
    "Paths",
    "Retraining",
    "RetrainingPolicy",
    "Schemas",
    "Scoring",
    "SearchDimension",
    "Settings",
    "Source",
    "SparkSettings",
    "TextPipeline",
    "TimeSplit",
    "Tracking",
    "Training",
    "UseCase",
    "available",
    "check_identifier",
    "check_table_reference",
    "conf_dir",
    "lakeforge_home",
    "load_environment",
    "load_settings",
    "load_use_case",
    "resolve_callable",
    "split_overrides",
    "use_case_path",
]
