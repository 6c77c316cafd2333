"""Spark job: the gate: promote the challenger to champion only if it is good enough.

spark-submit jobs/gate.py --use-case churn --env cluster
"""

import sys

from lakeforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "gate", *sys.argv[1:]]))
