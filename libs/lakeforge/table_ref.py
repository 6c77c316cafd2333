"""A table's name as its parts, with the three forms names travel in.

`TableRef` is a `str` whose value is the quoted SQL form (`` `gold`.`churn_labels` ``), so it goes
straight into `spark.read.table` and SQL text; `.plain` is the form people write (`gold.churn_labels`,
lineage and logs) and `.three_part` the one MLflow needs (`spark_catalog.gold.churn_labels` for a
table of Spark's session catalog). `TableRef.parse` reads any of the three back.
"""

from __future__ import annotations

SESSION_CATALOG = "spark_catalog"


class TableRef(str):
    catalog: str | None
    schema: str
    name: str

    def __new__(cls, schema: str, name: str, catalog: str | None = None) -> TableRef:
        parts = [part for part in (catalog, schema, name) if part]
        ref = super().__new__(cls, ".".join(f"`{part}`" for part in parts))
        ref.catalog, ref.schema, ref.name = catalog, schema, name
        return ref

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """`schema.table` or `catalog.schema.table`, quoted or not."""
        if isinstance(text, TableRef):
            return text
        parts = [part.strip("`") for part in str(text).split(".")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"'{text}' is not a table name: expected schema.table or catalog.schema.table")
        return cls(parts[-2], parts[-1], parts[0] if len(parts) == 3 else None)

    @property
    def sql(self) -> str:
        """The quoted form as an exact `str`: Delta's table builders refuse a subclass."""
        return str.__str__(self)

    @property
    def plain(self) -> str:
        return ".".join(part for part in (self.catalog, self.schema, self.name) if part)

    @property
    def three_part(self) -> str:
        return f"{self.catalog or SESSION_CATALOG}.{self.schema}.{self.name}"

    def __reduce__(self):
        return (TableRef, (self.schema, self.name, self.catalog))
