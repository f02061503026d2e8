"""scripts/airflow_services.sh: Airflow on this machine, healthy on 127.0.0.1, each component on its own,
stopped to the last process within seconds."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "airflow_services.sh"
DAG_ID = "movielens_similarity"
START_TIMEOUT_S = 300
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SOME_RUNNING, NOT_RUNNING = 1, 3
STOP_WITHIN_S = 15


@dataclass(frozen=True)
class Services:
    """One start of the script: its environment, URL, each component's session and what `start` printed."""

    env: dict
    url: str
    sessions: dict
    start_output: str
    start_errors: str = ""

    @property
    def home(self):
        return Path(self.env["AIRFLOW_HOME"])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def services_env(home, **settings):
    """The test environment with its own Airflow home and port; the script picks its SQLite database."""
    env = {key: value for key, value in os.environ.items() if key != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    return {**env, "AIRFLOW_HOME": str(home), "AIRFLOW_PORT": str(free_port()), **settings}


def run_script(command, env, timeout=60):
    return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def running_services(home, **settings):
    """The services started by the script with `home` as AIRFLOW_HOME; always stopped on the way out."""
    env = services_env(home, **settings)
    try:
        started = run_script("start", env, timeout=START_TIMEOUT_S)
        assert started.returncode == 0, started.stdout + started.stderr
        url = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
        yield Services(env, url, recorded_sessions(home), started.stdout, started.stderr)
    finally:
        stopped = run_script("stop", env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def recorded_sessions(home):
    """{component: its session id} from the pid files (each leader's pid, then its start time)."""
    files = sorted((Path(home) / "services").glob("*.pid"))
    return {file.stem: int(file.read_text().split()[0]) for file in files}



def api(services, method, path, body=None):
    """A REST call to the services' API (no login: every local user is an admin); (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{services.url}/api/v2{path}", method=method, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for_dag(services, dag_id, timeout=180):
    """The DAG as the API lists it, once the dag-processor has parsed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = api(services, "GET", f"/dags/{dag_id}")
        if status == 200:
            return body
        time.sleep(2)
    _, errors = api(services, "GET", "/importErrors")
    raise AssertionError(f"{dag_id} not listed after {timeout} s; import errors: {errors}")


def processes_of(session):
    """Live processes in the session or the process group `session`: {pid: (pgid, command line)}."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgid, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and session in (int(pgid), int(sid)):
            found[int(stat.parent.name)] = (int(pgid), command.strip())
    return found


def listening_addresses(pids):
    """(address, port) of every listening TCP socket the processes hold, from /proc/net/tcp{,6}."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    inodes.update(re.findall(r"^socket:\[(\d+)\]$", os.readlink(fd)))
    addresses = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                addresses.add((_address(address, width), int(port, 16)))
    return addresses


def _address(hex_address, width):
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp* print each 32-bit word of the address in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width // 2, 4))
    return socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-services")
    with running_services(home, MOVIELENS_STORAGE_ROOT=str(home / "storage")) as services:
        yield services


def alive(pid):
    """Whether process `pid` is running (a zombie, ended but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.2)


def status_lines(output):
    """{component: what `status` says of it}, from its lines "<component>: <state>"."""
    lines = (line.split(": ", 1) for line in output.splitlines())
    return {line[0]: line[1] for line in lines if line[0] in COMPONENTS}


def healthy_status(services, timeout=60):
    """`status` once it reports every component running and healthy (a heartbeat may be late a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_script("status", services.env)
        states = status_lines(status.stdout)
        if all(state.endswith((", healthy", ", answering")) for state in states.values()):
            return status
        assert time.monotonic() < deadline, status.stdout
        time.sleep(2)


def test_start_prints_the_url_once_every_component_is_healthy(services):
    assert f"Airflow is up at {services.url}" in services.start_output
    status, health = api(services, "GET", "/monitor/health")
    assert status == 200
    assert {name: part["status"] for name, part in health.items()} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy"}


def test_the_first_start_prints_only_its_own_progress(services):
    # It once printed "services.pid: No such file or directory", reading the pid file before writing it.
    assert services.start_errors.splitlines() == [
        f"airflow_services: preparing the metadata database in {services.home}",
        f"airflow_services: starting {' '.join(COMPONENTS)} (logs: {services.home / 'services'})"]


def test_each_component_leads_a_session_of_its_own(services):
    assert sorted(services.sessions) == sorted(COMPONENTS)
    assert len(set(services.sessions.values())) == len(COMPONENTS)
    for component, session in services.sessions.items():
        processes = processes_of(session)
        pgid, command = processes[session]  # the session's leader, also its process group's
        assert pgid == session
        assert re.search(rf"airflow {component.replace('-', '.')}\b", command), (component, command)


def test_only_the_api_server_listens_and_only_on_loopback(services):
    port = int(services.env["AIRFLOW_PORT"])
    pids = [pid for session in services.sessions.values() for pid in processes_of(session)]
    assert listening_addresses(pids) == {("127.0.0.1", port)}


def test_the_api_lists_the_projects_dag_without_import_errors(services):
    assert wait_for_dag(services, DAG_ID)["dag_id"] == DAG_ID
    assert api(services, "GET", "/importErrors") == (200, {"import_errors": [], "total_entries": 0})


def test_start_while_running_reports_the_running_services(services):
    again = run_script("start", services.env)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == f"airflow_services: already running at {services.url}\n"
    assert recorded_sessions(services.home) == services.sessions


def test_status_reports_each_component_running_and_healthy(services):
    status = healthy_status(services)
    assert status.returncode == 0, status.stdout + status.stderr
    pids = services.sessions
    assert status_lines(status.stdout) == {
        "api-server": f"running (pid {pids['api-server']}), answering",
        "scheduler": f"running (pid {pids['scheduler']}), healthy",
        "dag-processor": f"running (pid {pids['dag-processor']}), healthy",
        "triggerer": f"running (pid {pids['triggerer']}), healthy"}
    assert status.stdout.endswith(f"airflow_services: 4 of 4 components running at {services.url}\n")


def test_start_refuses_a_port_already_taken(services, tmp_path):
    env = {**services.env, "AIRFLOW_HOME": str(tmp_path)}
    refused = run_script("start", env)
    assert refused.returncode == 1
    assert f"port {services.env['AIRFLOW_PORT']} on 127.0.0.1 is taken" in refused.stderr


def test_a_killed_scheduler_is_reported_dead_alone_and_restarted_by_start(services):
    scheduler = services.sessions["scheduler"]
    executor_workers = set(processes_of(scheduler)) - {scheduler}
    assert executor_workers  # LocalExecutor's, which outlive a killed scheduler
    os.kill(scheduler, signal.SIGKILL)
    wait_until(lambda: not alive(scheduler), 10, "the scheduler's end")

    status = run_script("status", services.env)
    assert status.returncode == SOME_RUNNING, status.stdout + status.stderr
    states = status_lines(status.stdout)
    assert re.fullmatch(rf"DEAD \(pid {scheduler} has ended; \d+ of its processes left\); start restarts it",
                        states.pop("scheduler"))
    assert {component: state.split(",")[0] for component, state in states.items()} == {
        component: f"running (pid {pid})" for component, pid in services.sessions.items() if pid != scheduler}
    assert status.stdout.endswith(f"airflow_services: 3 of 4 components running at {services.url}\n")
    assert api(services, "GET", "/version")[0] == 200  # the API server did not go down with it

    restarted = run_script("start", services.env, timeout=START_TIMEOUT_S)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"airflow_services: starting scheduler (logs: {services.home / 'services'})" in restarted.stderr
    assert f"Airflow is up at {services.url}" in restarted.stdout
    sessions = recorded_sessions(services.home)
    assert sessions["scheduler"] != scheduler and alive(sessions["scheduler"])
    assert {name: pid for name, pid in sessions.items() if name != "scheduler"} == {
        name: pid for name, pid in services.sessions.items() if name != "scheduler"}
    assert not any(alive(pid) for pid in executor_workers)  # ended before the new scheduler started
    assert healthy_status(services).returncode == 0


def test_stop_ends_every_session_within_seconds(services):
    sessions = recorded_sessions(services.home)
    assert sorted(sessions) == sorted(COMPONENTS)
    assert all(processes_of(session) for session in sessions.values())
    started = time.monotonic()
    stopped = run_script("stop", services.env)
    seconds = time.monotonic() - started
    assert (stopped.returncode, stopped.stdout) == (0, "airflow_services: stopped\n"), stopped.stderr
    assert seconds < STOP_WITHIN_S
    assert {session: processes_of(session) for session in sessions.values()} == {
        session: {} for session in sessions.values()}
    assert recorded_sessions(services.home) == {}
    assert run_script("status", services.env).returncode == NOT_RUNNING


def test_status_of_services_never_started_says_so_and_nothing_else(tmp_path):
    status = run_script("status", services_env(tmp_path))
    assert (status.returncode, status.stderr) == (NOT_RUNNING, "")
    assert status.stdout.splitlines() == [
        *(f"{component}: not running" for component in COMPONENTS), "airflow_services: not running"]


def stand_in_component(home, component, script):
    """A new session led by `bash -c script`, recorded in the component's pid file as `start` does."""
    (home / "services").mkdir(exist_ok=True)
    pid_file = home / "services" / f"{component}.pid"
    leader = subprocess.Popen(["bash", "-c", f"""{script}
        echo "$$ $(awk '{{print $22}}' /proc/$$/stat)" > {pid_file}.new
        mv {pid_file}.new {pid_file}
        sleep 600 & wait"""], start_new_session=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not pid_file.exists():
        time.sleep(0.05)
    return leader


def test_stop_kills_processes_that_ignore_sigterm_after_the_grace(tmp_path):
    # A stand-in whose processes ignore SIGINT and SIGTERM, as LocalExecutor's workers do.
    leader = stand_in_component(tmp_path, "scheduler", 'trap "" INT TERM')
    try:
        session = recorded_sessions(tmp_path)["scheduler"]
        assert len(processes_of(session)) == 2
        started = time.monotonic()
        stopped = run_script("stop", services_env(tmp_path, AIRFLOW_STOP_TIMEOUT="1"))
        assert stopped.returncode == 0, stopped.stderr
        assert 1 <= time.monotonic() - started < 1 + 2
        assert processes_of(session) == {}
    finally:
        leader.kill()
        leader.wait()


def test_stop_leaves_alone_a_process_that_reuses_a_stale_pid(tmp_path):
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        # The pid file of a component whose leader is gone, its pid since given to another process.
        (tmp_path / "services").mkdir()
        (tmp_path / "services" / "scheduler.pid").write_text(f"{stranger.pid} 1\n")
        stopped = run_script("stop", services_env(tmp_path, AIRFLOW_STOP_TIMEOUT="1"))
        assert (stopped.returncode, stopped.stdout) == (0, "airflow_services: not running\n")
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
