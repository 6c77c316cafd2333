"""Spark job: score every entity with the champion model as of a date (default: the newest feature date).

spark-submit jobs/score.py --use-case churn --env cluster [--date 2026-04-01]
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "score", *sys.argv[1:]]))
