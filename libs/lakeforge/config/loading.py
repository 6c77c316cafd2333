"""Reading config: YAML files from `conf/`, environment overlays merged over what they extend, and
`--set` overrides; every mistake of a file is reported in one `ConfigError`, with the file and keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lakeforge.config.environment import Environment
from lakeforge.config.fields import check_identifier
from lakeforge.config.settings import Settings
from lakeforge.config.use_case import UseCase
from lakeforge.errors import ConfigError

DEFAULT_CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
SPARK_CONF_KEY = "spark.conf."
EXTENDS_KEY = "extends"


def conf_dir() -> Path:
    """The config folder: `LAKEFORGE_CONF` if set, else the repository's `conf/`."""
    return Path(os.environ.get("LAKEFORGE_CONF", DEFAULT_CONF_DIR))


def available(kind: str) -> list[str]:
    """The names of the use cases (`usecases`) or environments (`envs`) in the config folder."""
    return sorted(path.stem for path in (conf_dir() / kind).glob("*.yml"))


def _config_file(kind: str, option: str, name: str, directory: Path | None) -> Path:
    folder = (directory or conf_dir()) / kind
    try:
        return folder / f"{check_identifier(name)}.yml"
    except ValueError as exc:
        raise ConfigError(option, name, f"the name of a file in {folder} ({exc})") from None


def use_case_path(name: str, directory: Path | None = None) -> Path:
    return _config_file("usecases", "--use-case", name, directory)


def environment_path(name: str, directory: Path | None = None) -> Path:
    return _config_file("envs", "--env", name, directory)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(str(path), "<file>", "the file does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<file>", f"valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<root>", "a mapping of keys to values")
    return data


def _key(location: tuple[Any, ...]) -> str:
    """Pydantic's error location as a dotted key; a bad dict key is named by itself (`sources.bad-name`)."""
    return ".".join(str(part) for part in location if part != "[key]") or "<root>"


def _parse(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        mistakes = [(_key(error["loc"]), error["msg"]) for error in exc.errors()]
        (key, expected), *more = mistakes
        raise ConfigError(str(path), key, expected, more) from exc


def apply_overrides(data: dict[str, Any], overrides: dict[str, str], path: Path) -> dict[str, Any]:
    """Set dotted keys (`catalog`, `tracking.model_schema`) to YAML-parsed values, as `--set` asks.

    Spark settings are named by their whole dotted name: `spark.conf.spark.sql.shuffle.partitions=2`
    sets the one key `spark.sql.shuffle.partitions` of `spark.conf`, to the string "2", as Spark reads it.
    """
    for key, raw in overrides.items():
        node = data
        if key.startswith(SPARK_CONF_KEY) and key != SPARK_CONF_KEY:
            parents, leaf, value = ["spark", "conf"], key.removeprefix(SPARK_CONF_KEY), raw
        else:
            *parents, leaf = key.split(".")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} (--set)", key, f"a YAML value ({exc})") from exc
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{path} (--set)", key, f"'{part}' to be a mapping, it is {child!r}")
            node = child
        node[leaf] = value
    return data


def split_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """`["env.catalog=main", "use_case.training.max_evals=3"]` into per-file overrides."""
    split: dict[str, dict[str, str]] = {"env": {}, "use_case": {}}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, dot, rest = key.partition(".")
        if not sep or not dot or scope not in split or not rest:
            raise ConfigError("--set", pair, "env.KEY=VALUE or use_case.KEY=VALUE")
        split[scope][rest] = value
    return split


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, key by key: mappings merge, any other value replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        below = merged.get(key)
        merged[key] = merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def _environment_data(name: str, directory: Path | None, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """An environment file merged over the one it `extends` (and so on down the chain)."""
    path = environment_path(name, directory)
    data = _read_yaml(path)
    base = data.pop(EXTENDS_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(str(path), EXTENDS_KEY, "the name of another environment file")
    if base in (*chain, name):
        raise ConfigError(str(path), EXTENDS_KEY, f"no loop, but {' -> '.join((*chain, name, base))}")
    return merge(_environment_data(base, directory, (*chain, name)), data)


def load_use_case(name: str, directory: Path | None = None, overrides: dict[str, str] | None = None) -> UseCase:
    """Load and validate `conf/usecases/<name>.yml` (Great Expectations types are checked by
    `validation.check_expectations`, before a step that validates)."""
    path = use_case_path(name, directory)
    data = apply_overrides(_read_yaml(path), overrides or {}, path)
    return _parse(UseCase, data, path)


def load_environment(name: str, directory: Path | None = None, overrides: dict[str, str] | None = None) -> Environment:
    """Load and validate `conf/envs/<name>.yml`, merged over the environment it `extends`, if any."""
    path = environment_path(name, directory)
    data = apply_overrides(_environment_data(name, directory), overrides or {}, path)
    data.setdefault("name", name)
    return _parse(Environment, data, path)


def load_settings(use_case: str, env: str, directory: Path | None = None, overrides: list[str] = ()) -> Settings:
    """Load a use case and an environment overlay together, with `--set` overrides applied to each."""
    split = split_overrides(list(overrides))
    return Settings(
        use_case=load_use_case(use_case, directory, split["use_case"]),
        env=load_environment(env, directory, split["env"]),
        use_case_file=str(use_case_path(use_case, directory)),
    )
