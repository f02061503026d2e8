"""movielens_similarity's EMR target in deferrable mode, under a real scheduler and triggerer.

scripts/airflow_services.sh starts Airflow (LocalExecutor, SQLite) with
AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True and an AWS connection whose endpoint is a moto server in
this process, where the EMR double (tests/support/emr_double.py) really runs the bootstrap and the steps
under the nodes' own Python (the default, 3.9). Four runs go at once, each with its own fault: none (the
whole of ml-100k, checked exact against the local target), a failing stage (whose logs EMR delivers
only as it terminates the cluster, tests/support/logs_at_termination.py), a failed bootstrap, and stages
that outlast the provider's default waiter (60 polls; here one second apart). One start of the services
serves all.
"""
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from movielens_emr.data.storage import run_folder

from tests.deploy.test_airflow_services import Services, recorded_sessions, run_script, services_env
from tests.support.dag_runs import (
    BUCKET,
    DAG_ID,
    EMR_TASK_STATES,
    PREFIX,
    REGION,
    S3_ROOT,
    full_conf,
)
from tests.support.dag_runs import (
    local_similarities_csv as local_results,
)
from tests.support.logs_at_termination import LogsAtTermination

CONF = {"target": "emr", "dataset": "ml-latest-small", "node_count": 2, "sample_fraction": 0.2}
# The run with no fault: a whole dataset, on the node Python every EMR 7 release has.
SUCCESS_CONF = {"target": "emr", "dataset": "ml-100k", "node_count": 3}
RUNS = {"success": "deferred__success", "failing_stage": "deferred__failing_stage",
        "bootstrap": "deferred__bootstrap", "long": "deferred__long"}
# The provider's EmrStepSensor waits 60 attempts by default (a minute at one poll a second): the
# long run's first stage stays RUNNING for more polls than that.
DEFAULT_WAITER_ATTEMPTS, HELD_POLLS = 60, 70
# Every other run's first stage stays RUNNING for a few polls too, so that no trigger fires within a
# second or two of its deferral: Airflow's scheduler marks a resumed task failed when the trigger has
# fired before the scheduler handled the deferring try's executor event ("finished with state success,
# but the task instance's state attribute is queued"), a race a loaded machine makes likely.
SETTLE_POLLS = 8
# Generous: on a loaded machine the services alone can take minutes to start.
START_TIMEOUT_S, RUN_TIMEOUT_S, API_TIMEOUT_S = 600, 900, 120
DATABASE_ERROR_ATTEMPTS = 5
FAILED_STAGE, FAILED_STAGE_OPTION = 2, "--movie-blocks 0"
FAILED_STAGE_MESSAGE = "--movie-blocks must be at least 1"
STAGES_FAILED = {**EMR_TASK_STATES, "wait_for_stages[0]": "failed", "collect_results": "upstream_failed",
                 "record_metrics": "upstream_failed", "diagnose_failure": "success"}
# Long enough that reading the failed stage's logs before terminating its cluster would show: they
# arrive only with the termination. The terminate call must come well within it.
LOG_WAIT_SECONDS, FAILED_TO_TERMINATE_BOUND_SECONDS = 600, 60


def run_of(cluster):
    return {tag["Key"]: tag["Value"] for tag in cluster.tags}.get("movielens:run_id")


class FaultsByRun(LogsAtTermination):
    """The EMR double with each fault confined to one run's cluster or steps, so that runs go at once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fail_bootstrap()
        self.held_polls = {}
        self.hold_steps(self._held)

    def _fail_bootstrap_of(self, cluster):
        if run_of(cluster) == RUNS["bootstrap"]:
            super()._fail_bootstrap_of(cluster)

    def holds_logs_of(self, cluster):
        return run_of(cluster) == RUNS["failing_stage"]

    def _held(self, step_name):
        """Stage 1 of each run, held RUNNING for its first polls (a poll moves it on): the long run's
        HELD_POLLS, every other run's SETTLE_POLLS."""
        if not step_name.startswith("stage 1 of 3"):
            return False
        polls = self.held_polls[step_name] = self.held_polls.get(step_name, 0) + 1
        return polls <= (HELD_POLLS if f"[{RUNS['long']}]" in step_name else SETTLE_POLLS)

    def run_step(self, backend, cluster, step):
        if step.name.startswith(f"stage {FAILED_STAGE} of 3") and f"[{RUNS['failing_stage']}]" in step.name:
            args = step.args  # its reducer given a bad option: the stage's tasks exit non-zero
            args[args.index("-reducer") + 1] += f" {FAILED_STAGE_OPTION}"
        return super().run_step(backend, cluster, step)


@dataclass(frozen=True)
class Run:
    state: str
    tasks: dict
    logs: dict  # {task id: its first try's log text}
    cluster_id: str
    cluster_state: str
    failed_to_terminate_seconds: float | None  # from a step's FAILED to TerminateJobFlows for its cluster
    similarities_csv: bytes | None  # results/similarities.csv of a run that succeeded


def moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@contextlib.contextmanager
def running_services(home, **settings):
    """scripts/airflow_services.sh's services with `home` as AIRFLOW_HOME; always stopped on the way out."""
    env = services_env(home, AIRFLOW_START_TIMEOUT=str(START_TIMEOUT_S - 30), **settings)
    try:
        started = run_script("start", env, timeout=START_TIMEOUT_S)
        assert started.returncode == 0, started.stdout + started.stderr
        url = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
        yield Services(env, url, recorded_sessions(home), started.stdout)
    finally:
        stopped = run_script("stop", env, timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def api(services, method, path, body=None):
    """A REST call to the services' API (no login: every local user is an admin); (status, JSON body).

    The services keep their metadata in SQLite, one writer at a time: with a scheduler, a triggerer and
    four runs writing, the API now and then answers 500 "Database error" (a lock it waited out too
    long). Such a call is made again, a few times; the deployment itself uses PostgreSQL.
    """
    for attempt in range(DATABASE_ERROR_ATTEMPTS):
        url = f"{services.url}/api/v2{path}"
        response = requests.request(method, url, json=body, timeout=API_TIMEOUT_S)
        answer = response.json()
        detail = answer.get("detail") if isinstance(answer, dict) else None
        reason = detail.get("reason") if isinstance(detail, dict) else None
        locked = response.status_code == 500 and reason == "Database error"
        if not locked or attempt == DATABASE_ERROR_ATTEMPTS - 1:
            return response.status_code, answer
        time.sleep(2)


def wait_for_dag(services):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if api(services, "GET", f"/dags/{DAG_ID}")[0] == 200:
            return
        time.sleep(2)
    _, errors = api(services, "GET", "/importErrors")
    raise AssertionError(f"{DAG_ID} not parsed after {START_TIMEOUT_S} s; import errors: {errors}")


def trigger(services, run_id):
    conf = SUCCESS_CONF if run_id == RUNS["success"] else CONF
    status, body = api(services, "POST", f"/dags/{DAG_ID}/dagRuns",
                       {"dag_run_id": run_id, "logical_date": None, "conf": full_conf(conf)})
    # 409: an earlier attempt of api() did create it before its answer failed
    created = status == 409 and api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")[0] == 200
    assert status == 200 or created, body


def wait_for_end(services, run_id):
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        _, run = api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            return run["state"]
        time.sleep(2)
    raise AssertionError(f"{run_id} did not end within {RUN_TIMEOUT_S} s: {task_states(services, run_id)}")


def task_states(services, run_id):
    _, body = api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    return {ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti["state"]
            for ti in body["task_instances"]}


def task_logs(home, run_id):
    """{task id: text} of each task's first try: its log file and its triggers' (attempt=1.log.trigger.*)."""
    run_folder = Path(home, "logs", f"dag_id={DAG_ID}", f"run_id={run_id}")
    logs = {}
    for path in sorted(run_folder.glob("task_id=*/**/attempt=1.log*")):
        task_id = path.relative_to(run_folder).parts[0].removeprefix("task_id=")
        logs[task_id] = logs.get(task_id, "") + path.read_text(errors="replace")
    return logs


def cluster_of(emr, run_id):
    for cluster in emr.list_clusters()["Clusters"]:
        described = emr.describe_cluster(ClusterId=cluster["Id"])["Cluster"]
        tags = {tag["Key"]: tag["Value"] for tag in described["Tags"]}
        if tags.get("movielens:run_id") == run_id:
            return cluster["Id"], cluster["Status"]["State"]
    return None, None


def results_csv(s3, run_id):
    key = f"{PREFIX}/{run_folder(run_id)}/results/similarities.csv"
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def seconds_from_failed_to_terminate(emr, cluster_id, terminate_calls):
    """Seconds from the cluster's first FAILED step's end to the first TerminateJobFlows for it; else None."""
    if cluster_id not in terminate_calls:
        return None
    steps = emr.list_steps(ClusterId=cluster_id)["Steps"]
    failed = [step for step in steps if step["Status"]["State"] == "FAILED"]
    if not failed:
        return None
    ended = min(step["Status"]["Timeline"]["EndDateTime"].timestamp() for step in failed)
    return terminate_calls[cluster_id] - ended


@pytest.fixture(scope="module")
def deferred_runs(tmp_path_factory):
    """The four runs, at once, in one start of the services; what each left behind. All started stops."""
    home = tmp_path_factory.mktemp("airflow-deferrable")
    server, url = moto_server()
    double = FaultsByRun()
    try:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        clients = {service: boto3.client(service, region_name=REGION, endpoint_url=url,
                                         aws_access_key_id="testing", aws_secret_access_key="testing")
                   for service in ("s3", "emr")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        settings = {
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "extra": {"endpoint_url": url, "region_name": REGION}}),
            "MOVIELENS_STORAGE_ROOT": S3_ROOT, "MOVIELENS_POLL_SECONDS": "1", "MOVIELENS_TASK_RETRIES": "0",
            "MOVIELENS_LOG_WAIT_SECONDS": str(LOG_WAIT_SECONDS)}
        with double.installed(), running_services(home, **settings) as services:
            wait_for_dag(services)
            started = time.monotonic()
            for run_id in RUNS.values():
                trigger(services, run_id)
            states = {run_id: wait_for_end(services, run_id) for run_id in RUNS.values()}
            print(f"four deferred runs ended in {time.monotonic() - started:.0f} s")
            clusters = {run_id: cluster_of(clients["emr"], run_id) for run_id in RUNS.values()}
            yield {name: Run(states[run_id], task_states(services, run_id), task_logs(home, run_id),
                             *clusters[run_id], seconds_from_failed_to_terminate(
                                 clients["emr"], clusters[run_id][0], double.terminate_calls),
                             results_csv(clients["s3"], run_id) if states[run_id] == "success" else None)
                   for name, run_id in RUNS.items()}
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)  # the backends outlive the server
        server.stop()


def test_a_deferred_run_succeeds_and_its_stage_wait_deferred(deferred_runs):
    run = deferred_runs["success"]
    assert run.state == "success", run.tasks
    assert run.tasks == EMR_TASK_STATES
    assert run.cluster_state == "TERMINATED"
    # the wait ran in the triggerer: its trigger's polls are in the task's log
    assert "Step is still in non-terminal state" in run.logs["wait_for_stages"]


@pytest.fixture(scope="module")
def local_similarities_csv(dagbag, tmp_path_factory):
    """results/similarities.csv of the local target on the successful run's data and parameters."""
    return local_results(dagbag, SUCCESS_CONF, tmp_path_factory.mktemp("local-storage"))


def test_the_deferred_runs_results_on_the_nodes_python_are_those_of_the_local_target(
        deferred_runs, local_similarities_csv):
    assert deferred_runs["success"].similarities_csv == local_similarities_csv


def test_a_failing_stage_fails_its_wait_at_once_and_is_diagnosed_once_the_cluster_has_ended(deferred_runs,
                                                                                            capsys):
    run = deferred_runs["failing_stage"]
    assert run.failed_to_terminate_seconds is not None, run.tasks
    with capsys.disabled():  # the measurement, shown with the test's result
        print(f"\ndeferred mode: TerminateJobFlows came {run.failed_to_terminate_seconds:.1f} s after stage "
              f"{FAILED_STAGE} FAILED (MOVIELENS_LOG_WAIT_SECONDS={LOG_WAIT_SECONDS})")
    assert run.state == "failed"
    assert run.tasks == STAGES_FAILED
    assert run.cluster_state == "TERMINATED"
    assert 0 <= run.failed_to_terminate_seconds < FAILED_TO_TERMINATE_BOUND_SECONDS
    # the wait: the stage and EMR's reason, where the diagnosis follows; no log read
    log = run.logs["wait_for_stages"]
    assert f"stage {FAILED_STAGE} of 3 (stage {FAILED_STAGE} of 3: " in log
    assert "StagesFailedError" in log and "subprocess failed with code" in log
    assert "the full diagnosis follows once the cluster has ended: in the log of diagnose_failure" in log
    assert FAILED_STAGE_MESSAGE not in log and "last lines of its stderr" not in log
    # the diagnosis, from the logs EMR delivered with the termination: the task's traceback, the stderr
    diagnosis = run.logs["diagnose_failure"]
    assert f"stage {FAILED_STAGE} of 3 (stage {FAILED_STAGE} of 3: " in diagnosis
    own_error = diagnosis.split("the failed task's own error, from its container's log:", 1)[1]
    assert own_error.split("last lines of its stderr (", 1)[0].count(FAILED_STAGE_MESSAGE) == 1
    assert "task attempt_" in own_error and "/containers/application_" in own_error


def test_a_failed_bootstrap_fails_the_run_but_not_its_teardown(deferred_runs):
    run = deferred_runs["bootstrap"]
    assert run.state == "failed"
    assert run.tasks == STAGES_FAILED  # terminate_cluster and wait_for_termination succeed
    assert run.cluster_state == "TERMINATED_WITH_ERRORS"
    for log in (run.logs["wait_for_stages"], run.logs["diagnose_failure"]):
        assert f"cluster {run.cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE" in log
        assert "its bootstrap and node logs are under" in log


def test_stages_longer_than_the_providers_default_waiter_succeed(deferred_runs):
    run = deferred_runs["long"]
    assert run.state == "success", run.tasks
    assert run.tasks == EMR_TASK_STATES
    assert run.cluster_state == "TERMINATED"
    polls = run.logs["wait_for_stages"].count("Step is still in non-terminal state")
    assert polls > DEFAULT_WAITER_ATTEMPTS, polls  # more than the provider's default, in one deferral
    assert run.logs["wait_for_stages"].count("Pausing task as DEFERRED") == 1
