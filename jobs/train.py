"""Spark job: tune, track and register a challenger model (Hyperopt + MLflow).

spark-submit jobs/train.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "train", *sys.argv[1:]]))
