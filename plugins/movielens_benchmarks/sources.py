"""What the page reads: the run history, the latest benchmark report and the latest results, each stored file
checked as its writer writes it."""
import functools
import json
import re
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import LocalStorage, open_storage
from movielens_emr.reporting.history import fetch_runs, history_engine

DAG_ID = "movielens_similarity"
# Folder and file names as the benchmark DAG writes them; no leading dot, so no way out of benchmarks/.
SAFE_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
PLOT_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.png$"


class UnreadableFile(ValueError):
    """A stored result or report file that is not as its writer writes it; the message names it and why."""


class NoResults(LookupError):
    """Nothing of the kind asked for has been written yet."""


# --- per request: the deployment's storage root and history database --------------------------------------

def deployment_storage():
    """The deployment's storage root (MOVIELENS_STORAGE_ROOT), read anew for each request."""
    settings = settings_from_env()
    return open_storage(settings.storage_root, settings.aws_conn_id)


def history(**filters):
    """fetch_runs of the deployment's history database. Read only: the schema is record_run_history's to
    create and migrate, never a page view's."""
    return fetch_runs(history_engine(settings_from_env()), **filters)


def latest_report(storage):
    """load_report of the newest benchmark report folder; NoResults when there is none."""
    folder = latest_report_folder(storage)
    if folder is None:
        raise NoResults(f"no benchmark report yet: nothing under {storage.uri('benchmarks')}")
    return load_report(storage, folder)


def latest_neighbours(storage):
    """(run folder, {movie_id: {title, neighbours}}) of the latest results; NoResults or UnreadableFile."""
    try:
        successful = history(outcome="success", limit=20)
    except SQLAlchemyError:
        successful = []  # the run folders still hold the results
    key = latest_results_key(storage, successful)
    if key is None:
        raise NoResults(f"no results yet: no top_neighbours.json under {storage.uri('runs')}")
    return key.split("/results/")[0], neighbours_at(storage, key)


def neighbours_at(storage, key):
    """The top_neighbours.json at `key` of the deployment's storage, checked (check_neighbours); read once per
    version of the file."""
    settings = settings_from_env()
    return _neighbours(settings.storage_root, settings.aws_conn_id, key, modified_at(storage, key))


@functools.lru_cache(maxsize=2)
def _neighbours(root, aws_conn_id, key, modified):
    # Keyed by modification time: a rerun that rewrites the file is read again, a page view is not.
    return check_neighbours(read_json(open_storage(root, aws_conn_id), key), key)


# --- stored files ------------------------------------------------------------------------------------------

def modified_at(storage, key):
    """When a stored object was last written, in seconds since the epoch."""
    if isinstance(storage, LocalStorage):
        return Path(storage.uri(key)).stat().st_mtime
    return storage.hook.get_key(storage.key(key), bucket_name=storage.bucket).last_modified.timestamp()


def latest_report_folder(storage):
    """The benchmarks/<run> folder whose summary.json or report.md was written last, or None."""
    keys = [key for key in storage.list_keys("benchmarks")
            if key.count("/") == 2 and key.rsplit("/", 1)[-1] in ("summary.json", "report.md")]
    newest = max(keys, key=lambda key: modified_at(storage, key), default=None)
    return newest.rsplit("/", 1)[0] if newest else None


def read_json(storage, key):
    """A stored JSON document; UnreadableFile when it is not UTF-8 JSON (cut short, or not written by us)."""
    data = storage.get_bytes(key)
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise UnreadableFile(f"{key} is not valid JSON ({len(data):,} bytes): {error}") from error


def read_text(storage, key):
    """A stored UTF-8 text; UnreadableFile when it is not UTF-8."""
    try:
        return storage.get_bytes(key).decode()
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"{key} is not UTF-8 text: {error}") from error


REPORT_FILES = (("summary.json", "summary", read_json), ("report.md", "report_markdown", read_text))


def load_report(storage, folder):
    """A benchmark report folder as plain data: its summary, report text and plot file names. A file that
    is missing or unreadable is None; why it is unreadable is in `problems`."""
    names = {key.rsplit("/", 1)[-1] for key in storage.list_keys(folder) if key.count("/") == 2}
    report = {"folder": folder.split("/", 1)[1], "summary": None, "report_markdown": None,
              "plots": sorted(name for name in names if re.match(PLOT_NAME, name)), "problems": []}
    for name, field, read in REPORT_FILES:
        try:
            report[field] = read(storage, f"{folder}/{name}") if name in names else None
        except UnreadableFile as error:
            report["problems"].append(str(error))
    return report


def latest_results_key(storage, successful_runs):
    """top_neighbours.json of the newest successful run that has one, else the newest one under runs/."""
    for run in successful_runs:
        key = f"{run['run_folder']}/results/top_neighbours.json"
        if storage.exists(key):
            return key
    keys = [key for key in storage.list_keys("runs") if key.endswith("/results/top_neighbours.json")]
    return max(keys, key=lambda key: modified_at(storage, key), default=None)


def check_neighbours(movies, key):
    """`movies` if shaped as top_neighbours.json is ({movie id: {"title", "neighbours": [{...}]}}), else
    UnreadableFile naming the first movie that is not."""
    if not isinstance(movies, dict):
        raise UnreadableFile(f"{key}: not a mapping of movie ids to movies but a {type(movies).__name__}")
    for movie_id, movie in movies.items():
        if not _is_movie(movie):
            raise UnreadableFile(f"{key}: movie {movie_id} is not a title with a list of neighbours")
    return movies


def _is_movie(movie):
    """A movie as top_neighbours.json holds it: a title (or null) and a list of flat neighbour records."""
    return (isinstance(movie, dict) and "title" in movie and isinstance(movie["title"], str | None)
            and isinstance(movie.get("neighbours"), list) and all(map(is_record, movie["neighbours"])))


def is_scalar(value):
    return value is None or isinstance(value, str | int | float | bool)


def is_record(value):
    """A flat JSON object: every value a scalar."""
    return isinstance(value, dict) and all(is_scalar(item) for item in value.values())
