"""The EMR bootstrap script, run as a node would run it: wheels from "S3", pip from its wheel, no index.

The first tests run the script alone, quickly: `aws` is a stand-in on PATH that serves
s3://<bucket>/<key> from a local folder, which the real stage_job_files filled, the Python is this one,
and the wheelhouse is made here (tests/support/wheels.py). The last ones run it as EMR does, as the
cluster's bootstrap action on the EMR double's node (a bare CPython of the node's version, `aws s3 cp`
from moto's S3) with the pinned wheels of emr_requirements.txt: the job's packages import on each node
Python, and a wheel that does not fit or a hash not pinned ends the cluster as EMR would.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import LocalStorage
from movielens_emr.emr.job_files import BOOTSTRAP_FILE, stage_job_files
from movielens_emr.emr.wheelhouse import (
    REQUIREMENTS_FILE,
    NodePython,
    file_sha256,
    locked_requirements,
    select_wheels,
)
from movielens_emr.engine.similarity.job import JOB_FILE

from tests.support.emr_double import emr_streaming_double
from tests.support.wheels import tiny_wheelhouse

BUCKET = "bucket"
FAKE_AWS = textwrap.dedent("""\
    #!/bin/bash
    # aws s3 cp [--recursive] [--only-show-errors] s3://BUCKET/KEY DEST, served from $FAKE_S3/BUCKET/KEY
    set -eu
    [ "$1 $2" = "s3 cp" ] || { echo "fake aws: only s3 cp" >&2; exit 2; }
    shift 2; recursive=0; args=()
    for arg in "$@"; do
        case $arg in --recursive) recursive=1 ;; --only-show-errors) ;; *) args+=("$arg") ;; esac
    done
    source="$FAKE_S3/${args[0]#s3://}"
    if [ "$recursive" = 1 ]; then mkdir -p "${args[1]}"; cp -R "${source%/}/." "${args[1]}/"
    else cp "$source" "${args[1]}"; fi
    """)


@pytest.fixture
def node(tmp_path):
    """The run's job files staged into a fake S3 bucket; what the bootstrap action is given, as s3:// URIs."""
    s3_root = tmp_path / "s3"
    folder, requirements = tiny_wheelhouse(tmp_path / "wheels")
    wheels = select_wheels(folder, NodePython(), locked_requirements(requirements))
    staged = stage_job_files(LocalStorage(s3_root / BUCKET), "runs/r1", [JOB_FILE], NodePython(), wheels,
                             requirements)
    uris = {role: "s3://" + str(Path(path).relative_to(s3_root)) for role, path in staged.items()
            if role != "shipped"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_S3": str(s3_root)}
    env.pop("PYTHONPATH", None)
    return {"uris": uris, "s3": s3_root, "env": env, "packages": tmp_path / "packages"}


def bootstrap(node, python=sys.executable):
    args = [node["uris"]["wheelhouse"], node["uris"]["requirements"], python, str(node["packages"])]
    return subprocess.run(["bash", str(BOOTSTRAP_FILE), *args], env=node["env"], capture_output=True,
                          text=True, timeout=120, check=False)


def staged_file(node, role, name=""):
    return node["s3"] / node["uris"][role].removeprefix("s3://") / name


def test_the_packages_are_installed_from_the_staged_wheels_into_their_own_folder(node):
    done = bootstrap(node)
    assert done.returncode == 0, done.stderr
    assert f"movielens-probe 1.0: movielens_probe from {node['packages']}" in done.stdout
    where = "import movielens_probe; print(movielens_probe.__file__)"
    env = {**node["env"], "PYTHONPATH": str(node["packages"])}
    imported = subprocess.run([sys.executable, "-c", where], env=env, capture_output=True, text=True,
                              check=True)
    assert imported.stdout.startswith(str(node["packages"] / "movielens_probe"))
    # pip ran from its wheel and was not installed
    assert not (node["packages"] / "pip").exists()


@pytest.mark.parametrize("pattern", ["movielens_probe-*.whl", "pip-*.whl"])
def test_a_wheel_changed_after_staging_is_refused_before_anything_runs(node, pattern):
    (wheel,) = staged_file(node, "wheelhouse").glob(pattern)
    wheel.write_bytes(wheel.read_bytes() + b"changed")
    done = bootstrap(node)
    assert done.returncode == 1
    assert f"{wheel.name}: sha256 " in done.stderr and "is not one pinned" in done.stderr
    assert not node["packages"].exists()


def test_a_python_the_node_does_not_have_fails_the_bootstrap_saying_so(node):
    done = bootstrap(node, python="python3.99-not-here")
    assert done.returncode == 1
    assert "python3.99-not-here is not on this node" in done.stderr


def test_the_bootstrap_wants_its_four_arguments():
    done = subprocess.run(["bash", str(BOOTSTRAP_FILE), "s3://b/wheels"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "usage:" in done.stderr


# On the EMR double's node, with the pinned wheels -----------------------------------------------------

IMPORT_PACKAGES = ("{python} -c \"import sys, mrjob, numpy, yaml; sys.stdin.read(); "
                   "print(sys.version_info[:2], numpy.__version__, numpy.__file__)\"")


def emr_cluster_with_the_bootstrap(tmp_path, node, wheels_for=None, requirements=REQUIREMENTS_FILE):
    """Stage the job files to moto's S3 as a run does (the wheels of `wheels_for`, node's by default), make
    a cluster whose bootstrap action is the pipeline's for node, and add a step importing the packages;
    returns (emr client, cluster id, step id). Call inside mock_aws and the double."""
    wheels_for = wheels_for or node
    pins = locked_requirements(REQUIREMENTS_FILE)  # the wheels a deployment stages; `requirements` goes along
    wheels = select_wheels(os.environ["MOVIELENS_EMR_WHEELHOUSE"], wheels_for, pins)
    bucket = LocalStorage(tmp_path / "s3" / BUCKET)
    staged = stage_job_files(bucket, "runs/r1", [JOB_FILE], wheels_for, wheels, requirements)
    s3, emr = boto3.client("s3", region_name="us-east-1"), boto3.client("emr", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for path in (tmp_path / "s3" / BUCKET).rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, str(path.relative_to(tmp_path / "s3" / BUCKET)))
    s3.put_object(Bucket=BUCKET, Key="in/one.txt", Body=b"one line\n")
    uris = {role: "s3://" + str(Path(path).relative_to(tmp_path / "s3")) for role, path in staged.items()
            if role != "shipped"}
    cluster_id = emr.run_job_flow(
        Name="bootstrap", ReleaseLabel="emr-7.9.0", LogUri=f"s3://{BUCKET}/logs/",
        Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge",
                   "KeepJobFlowAliveWhenNoSteps": True},
        BootstrapActions=[{"Name": "install the job's Python requirements", "ScriptBootstrapAction": {
            "Path": uris["bootstrap"],
            "Args": [uris["wheelhouse"], uris["requirements"], node.binary, node.packages_dir]}}],
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]
    args = ["hadoop-streaming", "-D", "mapreduce.job.reduces=0", "-cmdenv", f"PYTHONPATH={node.packages_dir}",
            "-input", f"s3://{BUCKET}/in/one.txt", "-output", f"s3://{BUCKET}/out",
            "-mapper", IMPORT_PACKAGES.format(python=node.binary)]
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[{
        "Name": "import", "ActionOnFailure": "CANCEL_AND_WAIT",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}])["StepIds"]
    return emr, cluster_id, step_id


def step_state_after_polls(emr, cluster_id, step_id, polls=3):
    for _ in range(polls):
        state = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"]
    return state


@pytest.mark.parametrize("version", ["3.9", "3.11"])
def test_on_an_emr_node_the_pinned_packages_import_under_its_python(tmp_path, version):
    node = NodePython(version)
    with mock_aws(), emr_streaming_double() as double:
        emr, cluster_id, step_id = emr_cluster_with_the_bootstrap(tmp_path, node)
        state = step_state_after_polls(emr, cluster_id, step_id)
        output = boto3.client("s3", region_name="us-east-1").get_object(
            Bucket=BUCKET, Key="out/part-00000")["Body"].read().decode() if state == "COMPLETED" else ""
        root = double.node(cluster_id).root
    (run,) = double.bootstraps
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert state == "COMPLETED", double.execution(step_id).reason
    major, minor = version.split(".")
    pinned = locked_requirements(REQUIREMENTS_FILE)["numpy"].version
    assert output == f"({major}, {minor}) {pinned} {root}{node.packages_dir}/numpy/__init__.py\n"


@pytest.mark.parametrize("fault, message", [
    ("wheels of another Python", "No matching distribution found for numpy==2.0.2"),
    ("a hash not pinned", "is not one pinned in"),
])
def test_on_an_emr_node_a_wheelhouse_that_does_not_fit_fails_the_cluster(tmp_path, fault, message):
    node, requirements = NodePython("3.9"), REQUIREMENTS_FILE
    wheels_for = NodePython("3.11") if fault == "wheels of another Python" else node
    if fault == "a hash not pinned":  # numpy's pins without the hash of the 3.9 wheel staged
        (wheel,) = select_wheels(os.environ["MOVIELENS_EMR_WHEELHOUSE"], node, {
            "numpy": locked_requirements(REQUIREMENTS_FILE)["numpy"]}).values()
        requirements = tmp_path / "requirements.txt"
        pinned = REQUIREMENTS_FILE.read_text()
        requirements.write_text(pinned.replace(f" --hash=sha256:{file_sha256(wheel)}", ""))
    with mock_aws(), emr_streaming_double() as double:
        emr, cluster_id, step_id = emr_cluster_with_the_bootstrap(tmp_path, node, wheels_for, requirements)
        state = step_state_after_polls(emr, cluster_id, step_id)
        status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    (run,) = double.bootstraps
    assert run.returncode != 0 and message in run.stderr.decode()
    assert state == "CANCELLED" and double.executions == []
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    reason = status["StateChangeReason"]["Message"]
    assert reason.endswith("bootstrap action 1 returned a non-zero return code")
