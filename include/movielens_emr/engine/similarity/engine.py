"""The similarity engine behind the seam (protocol.Engine): the job of jobs/movie_similarities.py (with its
kernel beside it) for a run, its stage 2 block plan measured before it, its results collected after it, and
its figures."""
import logging
import math

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.data.datasets import get_dataset
from movielens_emr.engine.protocol import MrjobJob, TaskFile
from movielens_emr.engine.similarity.block_plan import pair_work_of_files, stage2_layout, stage_block_plan
from movielens_emr.engine.similarity.collect import collect_output
from movielens_emr.engine.similarity.job import (
    INTERPRETER_MB,
    JOB_CLASS,
    JOB_FILE,
    KERNEL_FILE,
    PLAN_STAGE,
    STAGE_NAMES,
    job_args,
    run_movie_blocks,
    stage2_reducer_bytes,
    work_metrics,
)

log = logging.getLogger(__name__)


class SimilarityEngine:
    """Exact item-item similarity of every movie pair co-rated by enough users, in three MapReduce stages."""

    name = DEFAULT_ENGINE
    stage_names = STAGE_NAMES
    # The job's exceptions that mean its input is at fault: the same input fails the same way again.
    input_errors = ("TooManyBadLines", "ItemsFileUnusable", "BadBlockPlan")

    def shipped_files(self):
        """The job file, then the kernel it imports from beside it."""
        return (JOB_FILE, KERNEL_FILE)

    def prepare(self, storage, run_prefix, config, ratings_paths):
        """The run's stage 2 block plan, measured on its own ratings (block_plan.stage_block_plan)."""
        return {"block_plan": stage_block_plan(storage, run_prefix, config, ratings_paths)}

    def job(self, config, staged):
        """The job with the run's blocks (stage2_layout, as its block plan was made for), the movies file
        for --items and, in stage 2, the block plan for --block-plan when the run has one."""
        movie_blocks, reduce_tasks = stage2_layout(config)
        task_files = [TaskFile("--items", staged["movies_uri"])]
        plan_uri = (staged.get("block_plan") or {}).get("uri")
        if plan_uri:
            task_files.append(TaskFile("--block-plan", plan_uri, stages=(PLAN_STAGE,)))
        return MrjobJob(job_file=JOB_FILE, job_class=JOB_CLASS, stage_names=STAGE_NAMES,
                        options=tuple(job_args(config, movie_blocks)), task_files=tuple(task_files),
                        reduce_tasks=reduce_tasks, support_files=(KERNEL_FILE,))

    def task_memory_mb(self, config):
        """The largest task's memory: a stage 2 reducer of the run's blocks (stage2_layout, raised to the
        block cap), its larger block 5 % over the mean as hashing leaves it, by the job's documented bound."""
        movie_blocks = run_movie_blocks(config, stage2_layout(config)[0])
        block_movies = math.ceil(get_dataset(config.dataset).movies / movie_blocks * 1.05)
        return INTERPRETER_MB + stage2_reducer_bytes(config.metric, block_movies) / 2**20

    def planned_work(self, config, ratings_paths):
        """The run's pair work W, which the time model is fitted on, counted on its own ratings files."""
        return pair_work_of_files(ratings_paths, config.sample_fraction)

    def collect(self, storage, output_folder, results_prefix):
        """results/similarities.csv (.csv.gz when large) and results/top_neighbours.json (collect.py)."""
        summary = collect_output(storage, output_folder, results_prefix)
        log.info("collected %d ordered pairs of %d movies into %s", summary["output_pairs"],
                 summary["movies"], summary["similarities_csv"])
        return summary

    def figures(self, counters, collected, staged):
        """Output pairs; W and stage 2's measured work skew; beside it, the skew its block plan predicted."""
        return {"output_pairs": collected["output_pairs"], **work_metrics(counters),
                **block_plan_metrics(staged.get("block_plan"))}


def block_plan_metrics(summary):
    """Stage 2's planned work skew beside the measured one, the plan's file, or null and why not."""
    summary = summary or {"uri": None, "skipped": "no block plan was computed for this run"}
    return {"stage2_planned_skew": summary.get("planned_skew"), "block_plan": summary["uri"],
            "block_plan_skipped": summary.get("skipped")}


ENGINE = SimilarityEngine()
