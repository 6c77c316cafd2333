"""Spark job: recompute the analyst-facing gold tables from silver.

spark-submit jobs/gold.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "gold", *sys.argv[1:]]))
