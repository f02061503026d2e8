"""The similarity job of jobs/, loaded as a class, and its arguments for one run."""
import functools
import importlib.util
import sys
from pathlib import Path

JOB_FILE = Path(__file__).resolve().parents[2] / "jobs" / "movie_similarities.py"
JOB_CLASS = "MRMovieSimilarities"


@functools.cache
def job_class():
    """The MRJob class, imported from its file: jobs/ stands alone and is not a package."""
    spec = importlib.util.spec_from_file_location("movie_similarities", JOB_FILE)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: mrjob finds the script to run tasks from through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, JOB_CLASS)


def job_args(config, movie_blocks, items_path):
    """The job's own options for a run's parameters (no runner options, no inputs)."""
    return [
        "--metric", config.metric,
        "--min-score", repr(config.min_score),
        "--min-co-ratings", str(config.min_co_ratings),
        "--sample-fraction", repr(config.sample_fraction),
        "--movie-blocks", str(movie_blocks),
        "--items", str(items_path),
    ]


def movie_blocks_for(task_slots, minimum=4):
    """Blocks G with at least one stage 2 reduce key (G*(G+1)/2 of them) per task slot, and at least `minimum`."""
    blocks = minimum
    while blocks * (blocks + 1) // 2 < task_slots:
        blocks += 1
    return blocks
