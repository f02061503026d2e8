"""The local target's job process: it dies with the task that started it, a later try stops a leftover, and a
task's failure on purpose ends it with the job's own error."""
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from movielens_emr.data.storage import RUN_OWNER_MARKER
from movielens_emr.engine.mrjob_jobs import load_job_class
from movielens_emr.engine.protocol import MrjobJob, TaskFile
from movielens_emr.engine.similarity.job import JOB_CLASS, JOB_FILE, STAGE_NAMES
from movielens_emr.local import runner as local_run

from conftest import MOVIELENS, REPO

SAMPLE = REPO / "include" / "sample_data" / "ml-latest-small-sample"


def similarity_job(movies_path):
    """The similarity job with its default options and the movies file movies_path."""
    return MrjobJob(JOB_FILE, JOB_CLASS, STAGE_NAMES, (), (TaskFile("--items", str(movies_path)),))


@pytest.fixture
def tiny_ratings(tmp_path):
    """The sample's first 2,000 ratings: a job of a few seconds."""
    path = tmp_path / "ratings.csv"
    path.write_text("".join((SAMPLE / "ratings.csv").read_text().splitlines(keepends=True)[:2001]))
    return path


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.1)


def start_task_process(tmp_path):
    """A process standing in for the task: run_local_job on ml-100k with two parallel tasks."""
    code = textwrap.dedent(f"""
        from movielens_emr.engine.protocol import MrjobJob, TaskFile
        from movielens_emr.engine.similarity.job import JOB_CLASS, JOB_FILE, STAGE_NAMES
        from movielens_emr.local.runner import run_local_job
        job = MrjobJob(JOB_FILE, JOB_CLASS, STAGE_NAMES, (),
                       (TaskFile("--items", {str(MOVIELENS / "ml-100k" / "u.item")!r}),))
        run_local_job(job,
                      [{str(MOVIELENS / "ml-100k" / "u.data")!r}], {str(tmp_path / "output")!r}, 2,
                      {str(tmp_path / "work")!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def test_the_job_and_its_task_processes_die_with_a_killed_task(tmp_path):
    task = start_task_process(tmp_path)
    record = tmp_path / "work" / local_run.JOB_RECORD
    try:
        wait_for(record.exists, 60, "the job's process record")
        pgid = json.loads(record.read_text())["pid"]
        # the job and mrjob's pool of two task processes
        wait_for(lambda: len(local_run.group_members(pgid)) >= 3, 60, "mrjob's pool")
    finally:
        task.send_signal(signal.SIGKILL)
        task.wait()
    wait_for(lambda: not local_run.group_members(pgid), 10, "the job's process group ending with its task")
    assert not (tmp_path / "output").exists() or not list((tmp_path / "output").iterdir())


def start_sleeping_group():
    """A process group of two sleeping processes, as a job left running by an earlier try would be."""
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & exec sleep 300"], start_new_session=True)
    wait_for(lambda: len(local_run.group_members(leader.pid)) == 2, 10, "the sleeping group")
    return leader


def end_group(leader):
    if local_run.group_members(leader.pid):
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()


@pytest.fixture
def leftover_group():
    leader = start_sleeping_group()
    yield leader.pid
    end_group(leader)


@pytest.fixture
def live_run_group():
    leader = start_sleeping_group()
    yield leader.pid
    end_group(leader)


def test_a_later_try_stops_the_job_an_earlier_one_left_running(tmp_path, leftover_group, tiny_ratings,
                                                              caplog):
    work_dir = tmp_path / "work"
    local_run.record_job(work_dir, leftover_group)
    with caplog.at_level(logging.INFO, logger="movielens_emr.local.runner"):
        result = local_run.run_local_job(similarity_job(SAMPLE / "movies.csv"), [tiny_ratings],
                                         tmp_path / "output", 2, work_dir)
    assert local_run.group_members(leftover_group) == []
    assert f"still running (process group {leftover_group}, 2 processes): stopping it" in caplog.text
    for number in (1, 2, 3):  # the task log follows the stages: a line as each starts and ends
        assert f"stage {number} of 3 started, " in caplog.text
        assert f"stage {number} of 3 finished in " in caplog.text
    assert result["counters"] and len(result["stage_seconds"]) == 3
    assert list((tmp_path / "output").glob("part-*"))
    # every map and reduce task timed; on 2 slots a stage's tasks add up to at most twice its time
    times = result["task_times"]
    assert (times["source"], times["missing"]) == ("local task times", None)
    for stage, seconds in zip(times["stages"], result["stage_seconds"], strict=True):
        assert stage["mapper"]["tasks"] >= 1 and stage["reducer"]["tasks"] >= 1
        assert stage["mapper"]["total_seconds"] + stage["reducer"]["total_seconds"] <= 2 * seconds + 0.01
    assert sorted(path.name for path in work_dir.iterdir()) == ["result.json"]  # no record, no scratch


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(tmp_path, leftover_group):
    work_dir = tmp_path / "work"
    local_run.record_job(work_dir, leftover_group)
    record = json.loads((work_dir / local_run.JOB_RECORD).read_text())
    record["start_ticks"] -= 1
    (work_dir / local_run.JOB_RECORD).write_text(json.dumps(record))
    assert local_run.stop_leftover_job(work_dir) == 0
    assert len(local_run.group_members(leftover_group)) == 2


def test_a_failed_job_leaves_no_scratch_copy_of_its_input(tmp_path, tiny_ratings):
    work_dir = tmp_path / "work"
    with pytest.raises(local_run.LocalJobFailed, match="exited with code"):
        local_run.run_local_job(similarity_job(tmp_path / "missing.csv"), [tiny_ratings],
                                tmp_path / "output", 2, work_dir)
    assert not (work_dir / "tmp").exists() and not (work_dir / local_run.JOB_RECORD).exists()


def test_the_local_reaper_stops_the_jobs_of_ended_runs_only(tmp_path, leftover_group, live_run_group):
    for run_id, pid in (("ended", leftover_group), ("running", live_run_group)):
        (tmp_path / "runs" / run_id / "local-job").mkdir(parents=True)
        (tmp_path / "runs" / run_id / RUN_OWNER_MARKER).write_text(run_id)
        local_run.record_job(tmp_path / "runs" / run_id / "local-job", pid)
    assert local_run.reap_local_jobs(tmp_path, lambda run_id: run_id == "running") == ["ended"]
    assert local_run.group_members(leftover_group) == []
    assert len(local_run.group_members(live_run_group)) == 2
    assert (tmp_path / "runs" / "running" / "local-job" / local_run.JOB_RECORD).exists()


@pytest.fixture
def mostly_bad_ratings(tmp_path):
    """Nine good ratings and one that is not a number: more bad lines than the job's default 1%."""
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{user}::{movie}::4::100\n" for user in (1, 2, 3) for movie in (1, 2, 3))
                    + "1::4::five::100\n")
    return path


def test_a_task_failing_on_purpose_ends_the_local_job_with_the_jobs_own_error(tmp_path, mostly_bad_ratings):
    with pytest.raises(local_run.LocalJobFailed) as failed:
        local_run.run_local_job(similarity_job(SAMPLE / "movies.csv"), [mostly_bad_ratings],
                                tmp_path / "output", 2, tmp_path / "work")
    last_line = str(failed.value).splitlines()[-1]
    assert last_line.startswith("movie_similarities.TooManyBadLines: 1 of 10 ratings lines in ")
    assert last_line.endswith("e.g. '1::4::five::100' (non-numeric rating)")


def test_a_task_failing_otherwise_ends_the_local_job_with_mrjobs_step_failure(tmp_path, tiny_ratings):
    plan = tmp_path / "block_plan.json"
    plan.write_text(json.dumps({"movie_blocks": 7, "blocks": {}}))  # the job runs with 4 blocks
    job = MrjobJob(JOB_FILE, JOB_CLASS, STAGE_NAMES, (), (TaskFile("--block-plan", str(plan)),))
    with pytest.raises(local_run.LocalJobFailed) as failed:
        local_run.run_local_job(job, [tiny_ratings], tmp_path / "output", 2, tmp_path / "work")
    last_line = str(failed.value).splitlines()[-1]  # mrjob's own failure: it logged the task's traceback
    assert last_line.startswith("mrjob.local._TaskFailedException: Step 2 of 3 failed: Command ")


def failed_task_runner(tmp_path, stderr):
    """A failure of mrjob's local runner that names its task, and a runner whose task wrote stderr."""
    path = tmp_path / "stderr"
    path.write_text(stderr)
    runner = SimpleNamespace(_task_stderr_path=lambda task_type, step_num, task_num: str(path))
    return runner, SimpleNamespace(task_type="reducer", step_num=0, task_num=3)


def traceback_ending(line):
    frames = '  File "job.py", line 1, in <module>\n    raise Failure()\n'
    return f"Traceback (most recent call last):\n{frames}{line}\n"


def test_the_error_ending_a_tasks_last_traceback_is_rebuilt_as_the_jobs_own(tmp_path):
    job_class = load_job_class(JOB_FILE, JOB_CLASS)
    stderr = (traceback_ending("ValueError: first") + "\nDuring handling of the above exception, another "
              "exception occurred:\n\n" + traceback_ending("TooManyBadLines: 5 of 7 ratings lines are bad")
              + "a line written after it\n")
    error = local_run.task_error(job_class, *failed_task_runner(tmp_path, stderr))
    assert type(error) is sys.modules[job_class.__module__].TooManyBadLines
    assert str(error) == "5 of 7 ratings lines are bad"


@pytest.mark.parametrize("last_line", [
    "similarity_kernel.BadBlockPlan: the kernel's, not the job module's",
    "MemoryError",
    "RuntimeError: TooManyBadLines: named in the message only",
])
def test_an_error_the_job_module_does_not_define_is_not_rebuilt(tmp_path, last_line):
    job_class = load_job_class(JOB_FILE, JOB_CLASS)
    runner, failure = failed_task_runner(tmp_path, traceback_ending(last_line))
    assert local_run.task_error(job_class, runner, failure) is None


def test_a_failure_that_names_no_task_is_not_read(tmp_path):
    job_class = load_job_class(JOB_FILE, JOB_CLASS)
    runner, _ = failed_task_runner(tmp_path, traceback_ending("TooManyBadLines: 5 of 7"))
    assert local_run.task_error(job_class, runner, SimpleNamespace(step_num=1)) is None
