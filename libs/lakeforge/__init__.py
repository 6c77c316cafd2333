"""lakeforge: raw files to scored, monitored predictions on Spark and Delta Lake."""

__version__ = "0.1.0"
