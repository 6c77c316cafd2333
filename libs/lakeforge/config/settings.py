"""A use case in an environment: what every job is given, and how it names its tables."""

from __future__ import annotations

from lakeforge.config.environment import Environment
from lakeforge.config.fields import Strict, check_identifier
from lakeforge.config.use_case import UseCase
from lakeforge.table_ref import TableRef


class Settings(Strict):
    """A use case in an environment: everything a job needs."""

    use_case: UseCase
    env: Environment
    # The use-case file this was loaded from, named by checks that run after loading.
    use_case_file: str | None = None

    def table_ref(self, layer: str, name: str) -> TableRef:
        """A table of a layer as its parts: `catalog.schema.table` on Unity Catalog, else `schema.table`."""
        return TableRef(getattr(self.env.schemas, layer), check_identifier(name), self.env.catalog)

    def table(self, layer: str, name: str) -> str:
        """The quoted SQL name of a table of a layer, as a plain `str` (Delta's builders accept no subclass)."""
        return self.table_ref(layer, name).sql

    def schema(self, layer: str) -> str:
        schema = getattr(self.env.schemas, layer)
        return ".".join(f"`{part}`" for part in [self.env.catalog, schema] if part)
