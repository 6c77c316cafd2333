"""Spark job: weekly table upkeep, OPTIMIZE and VACUUM of every table, keeping the versions live models read.

spark-submit jobs/maintain.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "maintain", *sys.argv[1:]]))
