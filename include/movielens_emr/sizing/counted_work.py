"""A planned run's work counted on its own ratings files, where they already are on this machine (a plan
never downloads them): the engine's planned_work, exact for the dataset and sample fraction."""
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import SAMPLE_DATA, get_dataset
from movielens_emr.engine.registry import engine_named

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedInput:
    """What an engine's planned_work reads of a run's config: its dataset and sample fraction."""

    dataset: str
    sample_fraction: float


def local_ratings_files(dataset, source_dir, cache_dir):
    """The dataset's ratings files where they are on this machine: bundled, in the source folder, or
    extracted in the download cache (the folders staging reads); None when they are in none."""
    folders = [SAMPLE_DATA] if dataset.bundled else []
    folders += [Path(source_dir)] if source_dir else []
    folders += [Path(cache_dir).expanduser()] if cache_dir else []
    for folder in folders:
        paths = [folder / dataset.name / name for name in dataset.ratings_files]
        if all(path.is_file() for path in paths):
            return paths
    return None


def counted_pair_work(dataset, sample_fraction=1.0, engine=DEFAULT_ENGINE, settings=None):
    """The planned run's work as its engine counts it on the dataset's ratings files here; None when the
    engine does not count one or the files are not on this machine (the plan then falls back on the
    history, and says so). Counted once per file version and fraction in a process."""
    counting = engine_named(engine)
    if not hasattr(counting, "planned_work"):
        return None
    settings = settings or settings_from_env()
    paths = local_ratings_files(get_dataset(dataset), settings.source_dir, settings.cache_dir)
    if paths is None:
        log.info("the ratings files of %s are not on this machine: its work is not counted", dataset)
        return None
    versions = tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in paths)
    return _counted(engine, dataset, versions, sample_fraction)


@functools.lru_cache(maxsize=32)
def _counted(engine, dataset, versions, sample_fraction):
    started = time.monotonic()
    work = engine_named(engine).planned_work(PlannedInput(dataset, sample_fraction),
                                             [Path(path) for path, _, _ in versions])
    log.info("the pair work of %s at sample fraction %g, counted on its ratings in %.1f s: %.4g", dataset,
             sample_fraction, time.monotonic() - started, work)
    return work
