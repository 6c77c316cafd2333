"""Spark job: type, validate, quarantine and merge bronze rows into silver.

spark-submit jobs/silver.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "silver", *sys.argv[1:]]))
