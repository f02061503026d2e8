"""The local target: an engine's mrjob job run by mrjob's local runner, timed stage by stage.

The job runs in a Python process of its own (`python -m movielens_emr.local.runner`). mrjob's local
runner forks its pool of task processes from the process that runs it, and Airflow's task
processes and `airflow dags test` have threads: a child forked while another thread holds a lock
waits on it for ever, and the run hangs. A fresh interpreter has no other thread. (A forkserver or
spawn pool is no way out: its children re-import the parent's main module, the `airflow` command,
which cannot start inside a task.)
"""
import collections
import ctypes
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from movielens_emr.data.storage import RUN_OWNER_MARKER
from movielens_emr.engine.mrjob_jobs import load_job_class
from movielens_emr.reporting.metrics import flatten_counters
from movielens_emr.sizing.task_times import (
    LOCAL_SOURCE,
    local_record_path,
    read_local_task_times,
    task_times_record,
    timed_task,
)

log = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # include/, which holds movielens_emr
FAILURE_TAIL_LINES = 40
JOB_RECORD = "job.json"
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
GROUP_STOP_SECONDS = 30
TRACEBACK_START = "Traceback (most recent call last):"


class LocalJobFailed(RuntimeError):
    """The job's process ended with an error; the message ends with the last lines it wrote."""


def run_local_job(job, input_paths, output_dir, parallel_tasks, work_dir):
    """Run the job (protocol.MrjobJob) with `parallel_tasks` concurrent tasks; {"seconds", "stage_seconds",
    "counters", "task_times"} (task_times as metrics.json holds them, see task_times.task_times_record).

    work_dir is this run's folder on this machine. It holds job.json (the job's process group and
    start, so that a later try stops a job this one leaves behind) and mrjob's scratch folder tmp/
    (copies of the input among others), removed when the job ends, whether it succeeded or not.
    The job runs in a process group of its own, which dies with the process calling this function
    however that one ends (parent-death signal), and with an exception raised in it. What the job's
    process writes (mrjob's progress, the job's own traceback) goes to this log line by line.
    """
    work_dir = Path(work_dir)
    stop_leftover_job(work_dir)
    scratch, result_file = work_dir / "tmp", work_dir / "result.json"
    result_file.unlink(missing_ok=True)
    request = {"job_file": str(job.job_file), "job_class": job.job_class, "job_args": job.options_with_uris(),
               "input_paths": [str(path) for path in input_paths],
               "output_dir": str(output_dir), "parallel_tasks": parallel_tasks, "local_tmp_dir": str(scratch)}
    command = [sys.executable, "-m", "movielens_emr.local.runner", json.dumps(request), str(result_file),
               str(os.getpid())]
    try:
        returncode, last_lines = run_job_process(command, work_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if returncode != 0:
        raise LocalJobFailed(f"the job's process exited with code {returncode}; its last lines:\n"
                             + "\n".join(last_lines))
    return json.loads(result_file.read_text())


def run_job_process(command, work_dir, env=None):
    """Run the job's process in a new session, logging its output; (its exit code, its last lines).

    env: the process's environment, by default this one's with the package on PYTHONPATH."""
    last_lines = collections.deque(maxlen=FAILURE_TAIL_LINES)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", env=env or child_env(), start_new_session=True)
    try:
        record_job(work_dir, child.pid)
        for line in child.stdout:
            log.info("job: %s", line.rstrip("\n"))
            last_lines.append(line.rstrip("\n"))
        child.wait()
    except BaseException:  # the task is being stopped (or failed here): its job goes with it
        stop_process_group(child.pid)
        child.wait()
        raise
    finally:
        child.stdout.close()
    (work_dir / JOB_RECORD).unlink(missing_ok=True)
    return child.returncode, last_lines


def record_job(work_dir, pid):
    """Write work_dir/job.json: the job's process group (its leader's pid) and the leader's start time."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / JOB_RECORD).write_text(json.dumps({"pid": pid, "start_ticks": process_start_ticks(pid)}))


def stop_leftover_job(work_dir):
    """Stop the process group recorded in work_dir/job.json by an earlier try, if any of it still runs.

    Nothing is stopped when the recorded pid now belongs to another process (a different start time).
    Returns the number of processes found running, 0 when there was nothing to stop.
    """
    record_file = Path(work_dir) / JOB_RECORD
    if not record_file.exists():
        return 0
    record = json.loads(record_file.read_text())
    pgid, leader_start = record["pid"], process_start_ticks(record["pid"])
    running = group_members(pgid) if leader_start in (None, record["start_ticks"]) else []
    if running:
        log.warning("a job left by an earlier try of this run is still running (process group %d, %d "
                    "processes): stopping it", pgid, len(running))
        stop_process_group(pgid)
    record_file.unlink()
    return len(running)


def stop_process_group(pgid, timeout=GROUP_STOP_SECONDS):
    """SIGKILL every process of the group and wait until none runs; TimeoutError when some still do."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process group {pgid} still runs {timeout} s after SIGKILL")
        time.sleep(0.05)


def reap_local_jobs(storage_root, run_is_active):
    """Stop the local jobs under storage_root/runs/ whose run has ended: the reaper's rule, on this machine.

    A run folder's job.json names a job; its owner marker names the run, and run_is_active(run_id)
    says whether that run is still queued or running. Returns the run ids whose job was stopped.
    """
    stopped = []
    for record in sorted(Path(storage_root).expanduser().glob(f"runs/*/local-job/{JOB_RECORD}")):
        owner = record.parents[1] / RUN_OWNER_MARKER
        run_id = owner.read_text() if owner.is_file() else None
        if run_id is not None and not run_is_active(run_id) and stop_leftover_job(record.parent):
            stopped.append(run_id)
    return stopped


def _proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name (state first), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def process_start_ticks(pid):
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def group_members(pgid):
    """The pids of the group's processes that are still running (zombies, which run nothing, left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = _proc_stat(entry.name) if entry.name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def child_env():
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT) + (os.pathsep + path if path else "")}


def run_in_this_process(job_file, job_class, job_args, input_paths, output_dir, parallel_tasks,
                        local_tmp_dir=None):
    """The job run by mrjob's local runner in this process; only for a process without other threads."""
    runner_args = ["-r", "local", "--no-conf", "--no-bootstrap-mrjob",
                   "--num-cores", str(parallel_tasks), "--output-dir", str(output_dir)]
    if local_tmp_dir:
        runner_args += ["--local-tmp-dir", str(local_tmp_dir)]
        Path(local_tmp_dir).mkdir(parents=True, exist_ok=True)
    job = load_job_class(Path(job_file), job_class)([*job_args, *runner_args, *map(str, input_paths)])
    stage_seconds, stages = [], len(job.steps())
    with job.make_runner() as runner, tempfile.TemporaryDirectory(prefix="task-times-",
                                                                  dir=local_tmp_dir) as task_records:
        run_step = runner._run_step

        # mrjob has no per-step timing of its own; wrapping its step method measures each stage.
        def timed_step(step, step_num):
            started = time.monotonic()
            log.info("stage %d of %d started, %.1f s into the job", step_num + 1, stages,
                     started - job_started)
            run_step(step, step_num)
            stage_seconds.append(round(time.monotonic() - started, 3))
            log.info("stage %d of %d finished in %.1f s", step_num + 1, stages, stage_seconds[-1])

        runner._run_step = timed_step
        record_task_times(runner, task_records)
        started = job_started = time.monotonic()
        run_raising_task_errors(job, runner)
        seconds = round(time.monotonic() - started, 3)
        counters = flatten_counters(runner.counters())
        task_times = task_times_record(LOCAL_SOURCE, read_local_task_times(task_records, len(job.steps())))
    return {"seconds": seconds, "stage_seconds": stage_seconds, "counters": counters,
            "task_times": task_times}


def run_raising_task_errors(job, runner):
    """runner.run(); when a task fails with an exception the job's own module defines (TooManyBadLines, ...),
    that exception, rebuilt from the task's stderr (task_error), rather than mrjob's StepFailedException."""
    from mrjob.step import StepFailedException  # here: the DAG's modules import this one, and not mrjob

    try:
        runner.run()
    except StepFailedException as failure:
        error = task_error(type(job), runner, failure)
        if error is None:
            raise
        # mrjob has logged the task's traceback; the job's own message is the clearest last word.
        raise error from None


def task_error(job_class, runner, failure):
    """The exception that ended the task a failed step blames, as the job's own: the last traceback in the
    task's stderr, when it ends with a class that job_class's module defines, rebuilt with its message.

    None when it names another class, or when the failure names no task: mrjob's local runner names it
    (task_type, step_num, task_num) and keeps its stderr where _task_stderr_path says (mrjob 0.7's, as
    constraints.txt pins it).
    """
    task = tuple(getattr(failure, field, None) for field in ("task_type", "step_num", "task_num"))
    if None in task:
        return None
    try:
        stderr = Path(runner._task_stderr_path(*task)).read_text(errors="replace")
    except OSError:
        return None
    name, _, message = last_exception_line(stderr).partition(": ")
    module = sys.modules[job_class.__module__]
    error = getattr(module, name.rpartition(".")[2], None)
    if isinstance(error, type) and issubclass(error, Exception) and error.__module__ == module.__name__:
        return error(message)
    return None


def last_exception_line(text):
    """The line that ends the last Python traceback in text (`Name: message`), or "" without one."""
    lines = text.splitlines()
    starts = [number for number, line in enumerate(lines) if line.startswith(TRACEBACK_START)]
    after = lines[starts[-1] + 1:] if starts else []
    return next((line for line in after if line.strip() and not line[0].isspace()), "")


def record_task_times(runner, folder):
    """Make each map task (its mapper and combiner) and reduce task of mrjob's local runner write its
    start and duration to folder (task_times.timed_task), where read_local_task_times finds them.

    The clock runs in the runner's pool process, around mrjob's own task function: it measures the
    time the task held one of the --num-cores slots, the sort of its combiner's input included (a
    Hadoop map task runs its combiner too), with no extra process per task and no change to the job.
    A --task-python-bin wrapper would time only the Python processes, a map task's mapper and
    combiner apart, and start one more process per task. The two methods are mrjob 0.7's
    (constraints.txt pins it), as _run_step above is.
    """
    map_task, any_task = runner._run_mapper_and_combiner_func, runner._run_task_func

    def timed_map_task(step_num, task_num, map_split):
        return functools.partial(timed_task, map_task(step_num, task_num, map_split),
                                 local_record_path(folder, step_num, "mapper", task_num))

    def timed_reduce_task(task_type, step_num, task_num, map_split=None):
        task = any_task(task_type, step_num, task_num, map_split)
        if task_type != "reducer":
            return task  # a mapper or a combiner: timed as part of its map task
        return functools.partial(timed_task, task, local_record_path(folder, step_num, "reducer", task_num))

    runner._run_mapper_and_combiner_func = timed_map_task
    runner._run_task_func = timed_reduce_task


def die_with_parent(parent_pid):
    """Make this process's group (the job and the pool of task processes mrjob forks) die with the parent.

    The kernel sends this process SIGTERM when its parent dies (PR_SET_PDEATHSIG; the parent is the
    task's process, killed with SIGKILL or not), and the handler kills the whole group: the pool's
    processes would otherwise run on. Forked children get SIGTERM's default back, so that mrjob's
    pool.terminate() still ends only its workers.
    """
    signal.signal(signal.SIGTERM, _kill_own_group)
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        _kill_own_group()


def _kill_own_group(*_):
    os.killpg(os.getpgrp(), signal.SIGKILL)


def run_as_child(argv, run):
    """A job's child process: argv is (program, REQUEST_JSON, RESULT_FILE, PARENT_PID); it dies with its
    parent, logs to stderr, and writes run(**request)'s result to RESULT_FILE as JSON."""
    die_with_parent(int(argv[3]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    request, result_file = json.loads(argv[1]), Path(argv[2])
    result_file.write_text(json.dumps(run(**request)))


def main(argv):
    """python -m movielens_emr.local.runner REQUEST_JSON RESULT_FILE PARENT_PID"""
    run_as_child(argv, run_in_this_process)


if __name__ == "__main__":
    main(sys.argv)
