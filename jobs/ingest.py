"""Spark job: land new raw files in bronze Delta tables, exactly once.

spark-submit jobs/ingest.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ingest", *sys.argv[1:]]))
