"""Spark job: drift, quality and the retraining decision for a scoring date (default: the newest scored).

spark-submit jobs/monitor.py --use-case churn --env cluster [--date 2026-04-01]
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "monitor", *sys.argv[1:]]))
