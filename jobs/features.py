"""Spark job: refresh the feature tables (only new time windows; --full for all) and the label table.

spark-submit jobs/features.py --use-case churn --env cluster [--full]
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "features", *sys.argv[1:]]))
