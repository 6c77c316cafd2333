"""Trigger the bundle's training job on Databricks through the Jobs API (`databricks-sdk`).

Authentication is the SDK's own: DATABRICKS_HOST with DATABRICKS_TOKEN (or a profile, or the
notebook context on Databricks); nothing is read from the repository. An idempotency token makes
a rerun of the same decision attach to the run it already started instead of starting another.
"""

from __future__ import annotations

import datetime as dt
import logging

from lakeforge.errors import RetrainingFailed

log = logging.getLogger(__name__)


def run_training_job(
    job_id: int,
    parameters: dict[str, str],
    idempotency_token: str,
    wait: bool = True,
    timeout: dt.timedelta = dt.timedelta(hours=2),
    client=None,
) -> int:
    """Start the job (`jobs.run_now`) and return its run id; with `wait`, fail unless it ends in SUCCESS.

    The SDK's waiter returns a terminated run whatever its result, so the result state is checked here.
    """
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import RunResultState

    client = client or WorkspaceClient()
    waiter = client.jobs.run_now(job_id=job_id, job_parameters=parameters, idempotency_token=idempotency_token)
    run_id = waiter.response.run_id
    log.info("retraining: started run %s of Databricks job %s", run_id, job_id)
    if not wait:
        return run_id
    run = waiter.result(timeout=timeout)
    state = run.state
    result = state.result_state if state else None
    if result != RunResultState.SUCCESS:
        message = state.state_message if state and state.state_message else "no message"
        raise RetrainingFailed(
            f"Databricks job {job_id} run {run_id} ended {result.value if result else 'without a result'}: {message}"
        )
    return run_id
