"""lakeforge: a Spark batch ML system on Delta Lake."""

from setuptools import find_packages, setup

setup(
    name="lakeforge",
    version="0.1.0",
    description="Raw files to scored, monitored predictions on Spark and Delta Lake",
    python_requires=">=3.11,<3.12",
    package_dir={"": "libs"},
    packages=find_packages("libs"),
    install_requires=[
        # pyspark-client (pulled by the Airflow Spark provider) must match exactly; its newest 4.1 is 4.1.3.
        "pyspark==4.1.3",
        # The delta-spark 4.4.1 jar is not on Maven Central as reached here; 4.4.0 keeps Python and JVM equal.
        "delta-spark==4.4.0",
        "great-expectations==1.24.1",
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "pydantic>=2.6,<3",
        "pyyaml>=6",
        # parses a use case's SQL transforms when config loads (Spark dialect), before Spark starts
        "sqlglot>=25",
        # 3.18's skinny and tracing packages are not published here yet.
        "mlflow==3.17.2",
        "hyperopt==0.3.0",
        "scikit-learn>=1.5",
        "matplotlib>=3.8",
        # 0.7 fails to import with pandas 3.
        "evidently==0.7.23",
        "databricks-sdk>=0.60",
    ],
    extras_require={
        "dev": [
            # pytest 9.2 ignores xdist_group marks (pytest-dev/pytest-xdist#1386): both workers would run the DAG.
            "pytest>=8,<9.2",
            # two workers: the subprocess-heavy tests (Airflow, cluster, notebooks) beside the in-process ones
            "pytest-xdist>=3.6",
            "chispa>=0.10",
            "ruff>=0.6",
            "jsonschema>=4.20",
            # notebooks: executed by a real kernel in the tests, opened with Jupyter Lab
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            "jupyterlab>=4.2",
        ],
    },
    entry_points={"console_scripts": ["lakeforge=lakeforge.cli:main"]},
)
