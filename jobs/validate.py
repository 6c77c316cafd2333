"""Spark job: the validation gate: promote the challenger to champion only if it is good enough.

spark-submit jobs/validate.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "validate", *sys.argv[1:]]))
