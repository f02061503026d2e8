"""The local target: the same job file run by mrjob's local runner, timed stage by stage.

The job runs in a Python process of its own (`python -m movielens_emr.local_run`). mrjob's local
runner forks its pool of task processes from the process that runs it, and Airflow's task
processes and `airflow dags test` have threads: a child forked while another thread holds a lock
waits on it for ever, and the run hangs. A fresh interpreter has no other thread. (A forkserver or
spawn pool is no way out: its children re-import the parent's main module, the `airflow` command,
which cannot start inside a task.)
"""
import collections
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from movielens_emr.job import job_class
from movielens_emr.metrics import flatten_counters

log = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # include/, which holds movielens_emr
FAILURE_TAIL_LINES = 40


class LocalJobFailed(RuntimeError):
    """The job's process ended with an error; the message ends with the last lines it wrote."""


def run_local_job(job_args, input_paths, output_dir, parallel_tasks):
    """Run the job with `parallel_tasks` concurrent tasks; {"seconds", "stage_seconds", "counters"}.

    What the job's process writes (mrjob's progress, the job's own traceback) goes to this log
    line by line, as it comes.
    """
    request = {"job_args": list(job_args), "input_paths": [str(path) for path in input_paths],
               "output_dir": str(output_dir), "parallel_tasks": parallel_tasks}
    with tempfile.TemporaryDirectory(prefix="movielens-local-run-") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "movielens_emr.local_run", json.dumps(request), str(result_file)]
        last_lines = collections.deque(maxlen=FAILURE_TAIL_LINES)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", env=_child_env()) as child:
            for line in child.stdout:
                log.info("job: %s", line.rstrip("\n"))
                last_lines.append(line.rstrip("\n"))
        if child.returncode != 0:
            raise LocalJobFailed(f"the job's process exited with code {child.returncode}; its last lines:\n"
                                 + "\n".join(last_lines))
        return json.loads(result_file.read_text())


def _child_env():
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT) + (os.pathsep + path if path else "")}


def run_in_this_process(job_args, input_paths, output_dir, parallel_tasks):
    """The job run by mrjob's local runner in this process; only for a process without other threads."""
    runner_args = ["-r", "local", "--no-conf", "--no-bootstrap-mrjob",
                   "--num-cores", str(parallel_tasks), "--output-dir", str(output_dir)]
    job = job_class()([*job_args, *runner_args, *map(str, input_paths)])
    stage_seconds = []
    with job.make_runner() as runner:
        run_step = runner._run_step

        # mrjob has no per-step timing of its own; wrapping its step method measures each stage.
        def timed_step(step, step_num):
            started = time.monotonic()
            run_step(step, step_num)
            stage_seconds.append(round(time.monotonic() - started, 3))
            log.info("stage %d finished in %.1f s", step_num + 1, stage_seconds[-1])

        runner._run_step = timed_step
        started = time.monotonic()
        runner.run()
        seconds = round(time.monotonic() - started, 3)
        counters = flatten_counters(runner.counters())
    return {"seconds": seconds, "stage_seconds": stage_seconds, "counters": counters}


def main(argv):
    """python -m movielens_emr.local_run REQUEST_JSON RESULT_FILE"""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    request, result_file = json.loads(argv[1]), Path(argv[2])
    result_file.write_text(json.dumps(run_in_this_process(**request)))


if __name__ == "__main__":
    main(sys.argv)
