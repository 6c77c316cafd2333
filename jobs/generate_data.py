"""Spark job: write demo landing files for a use case (batch 0 is history, later batches new days).

spark-submit jobs/generate_data.py --use-case churn --rows 100000 --batch 1
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-data", *sys.argv[1:]]))
