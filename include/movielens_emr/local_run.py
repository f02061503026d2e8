"""The local target: the same job file run by mrjob's local runner, timed stage by stage."""
import contextlib
import logging
import multiprocessing
import time

from movielens_emr.job import job_class
from movielens_emr.metrics import flatten_counters

log = logging.getLogger(__name__)


def run_local_job(job_args, input_paths, output_dir, parallel_tasks):
    """Run the job with `parallel_tasks` concurrent tasks; {"seconds", "stage_seconds", "counters"}."""
    runner_args = ["-r", "local", "--no-conf", "--no-bootstrap-mrjob",
                   "--num-cores", str(parallel_tasks), "--output-dir", str(output_dir)]
    job = job_class()([*job_args, *runner_args, *map(str, input_paths)])
    stage_seconds = []
    with task_pool_started_cleanly(), job.make_runner() as runner:
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


@contextlib.contextmanager
def task_pool_started_cleanly():
    """mrjob's local runner, with its pool of task processes forked by a forkserver.

    mrjob forks the pool from the calling process, which here has threads (Airflow's task runner,
    `airflow dags test`): a child forked while another thread holds a lock (logging's, say) waits
    on it for ever, and the run hangs. A forkserver forks from a clean single-threaded process.
    """
    import mrjob.local

    forking_pool = mrjob.local.Pool
    mrjob.local.Pool = multiprocessing.get_context("forkserver").Pool
    try:
        yield
    finally:
        mrjob.local.Pool = forking_pool
