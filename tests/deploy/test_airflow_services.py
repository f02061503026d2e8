"""scripts/airflow_services.sh: Airflow on this machine, healthy on 127.0.0.1, stopped to the last process."""
import contextlib
import json
import os
import re
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
COMPONENTS = ("api.server", "scheduler", "dag-processor", "triggerer")
NOT_RUNNING = 3


@dataclass(frozen=True)
class Services:
    """One start of the script: its environment, URL, session id and what `start` printed."""

    env: dict
    url: str
    session: int
    start_output: str


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
        session = recorded_session(home)
        yield Services(env, f"http://127.0.0.1:{env['AIRFLOW_PORT']}", session, started.stdout)
    finally:
        stopped = run_script("stop", env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def recorded_session(home):
    """The session id in the pid file (its leader's pid; the leader's start time follows it)."""
    return int((Path(home) / "services.pid").read_text().split()[0])


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


def test_start_prints_the_url_once_every_component_is_healthy(services):
    assert f"Airflow is up at {services.url}" in services.start_output
    status, health = api(services, "GET", "/monitor/health")
    assert status == 200
    assert {name: part["status"] for name, part in health.items()} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy"}


def test_every_component_runs_in_the_session_of_the_pid_file(services):
    commands = [command for _, command in processes_of(services.session).values()]
    for component in COMPONENTS:
        assert any(re.search(rf"airflow {component}", command) for command in commands), (component, commands)


def test_only_the_api_server_listens_and_only_on_loopback(services):
    port = int(services.env["AIRFLOW_PORT"])
    assert listening_addresses(processes_of(services.session)) == {("127.0.0.1", port)}


def test_the_api_lists_the_projects_dag_without_import_errors(services):
    assert wait_for_dag(services, DAG_ID)["dag_id"] == DAG_ID
    assert api(services, "GET", "/importErrors") == (200, {"import_errors": [], "total_entries": 0})


def test_start_while_running_reports_the_running_services(services):
    again = run_script("start", services.env)
    assert again.returncode == 0, again.stderr
    assert f"already running at {services.url} (session {services.session})" in again.stdout


def test_status_reports_running_and_healthy(services):
    # On a loaded machine a heartbeat can be late for a moment: healthy again within a minute is enough.
    deadline = time.monotonic() + 60
    while True:
        status = run_script("status", services.env)
        assert status.returncode == 0, status.stderr
        assert f"running at {services.url} (session {services.session})" in status.stdout
        if status.stdout.endswith(", healthy\n") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status.stdout.endswith(", healthy\n"), status.stdout


def test_start_refuses_a_port_already_taken(services, tmp_path):
    env = {**services.env, "AIRFLOW_HOME": str(tmp_path)}
    refused = run_script("start", env)
    assert refused.returncode == 1
    assert f"port {services.env['AIRFLOW_PORT']} on 127.0.0.1 is taken" in refused.stderr


def test_stop_leaves_no_process_of_the_session(services):
    assert processes_of(services.session)
    stopped = run_script("stop", services.env)
    assert stopped.returncode == 0, stopped.stderr
    assert processes_of(services.session) == {}
    assert run_script("status", services.env).returncode == NOT_RUNNING


def stand_in_session(script):
    """A new session led by `bash -c script`, which writes the pid file as the script's leader does."""
    return subprocess.Popen(["bash", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_stop_kills_processes_that_ignore_sigint_and_sigterm(tmp_path):
    # A stand-in session whose processes ignore SIGINT and SIGTERM, as a hung scheduler would.
    leader = stand_in_session(f"""trap "" INT TERM
        echo "$$ $(awk '{{print $22}}' /proc/$$/stat)" > {tmp_path}/services.pid.new
        mv {tmp_path}/services.pid.new {tmp_path}/services.pid
        sleep 600 & wait""")
    try:
        while not (tmp_path / "services.pid").exists():
            time.sleep(0.05)
        session = recorded_session(tmp_path)
        assert len(processes_of(session)) == 2
        stopped = run_script("stop", services_env(tmp_path, AIRFLOW_STOP_TIMEOUT="1"))
        assert stopped.returncode == 0, stopped.stderr
        assert processes_of(session) == {}
    finally:
        leader.kill()
        leader.wait()


def test_stop_leaves_alone_a_process_that_reuses_a_stale_pid(tmp_path):
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        # The pid file of a session whose leader is gone, its pid since given to another process.
        (tmp_path / "services.pid").write_text(f"{stranger.pid} 1\n")
        stopped = run_script("stop", services_env(tmp_path, AIRFLOW_STOP_TIMEOUT="1"))
        assert (stopped.returncode, stopped.stdout) == (0, "airflow_services: not running\n")
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
