"""One run's stored files: its folder under runs/, its metrics.json, its results/ and their downloads. A run
id is user input: only a safe one names a folder, and no path leads out of the storage root."""
import re
from urllib.parse import quote

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.data.storage import RUN_OWNER_MARKER, LocalStorage, run_folder
from movielens_emr.reporting.metrics import FAILURE_KEY

from .sources import SAFE_NAME, NoResults, UnreadableFile, neighbours_at, read_json

# Airflow's default allowed_run_id_pattern ([scheduler]), which its own run ids follow, without a leading dot
# and at most as long as its run_id column. A run id outside it has no page.
RUN_ID_PATTERN = r"^[A-Za-z0-9_~:+-][A-Za-z0-9_.~:+-]{0,249}$"
RUN_FOLDER = re.compile(r"runs/[A-Za-z0-9_-][A-Za-z0-9._-]*")
METRICS_FILE = "metrics.json"
NEIGHBOURS_FILE = "top_neighbours.json"
CHUNK_BYTES = 1 << 20


class UnsafeName(ValueError):
    """A run id or file name that names no file of a run, or a path that leads out of the storage root."""


class NotThisRun(LookupError):
    """The run id's folder belongs to another run (its owner marker names that run)."""


def folder_of(run_id):
    """runs/<folder> of a run id (movielens_emr.data.storage.run_folder); UnsafeName for an id outside
    RUN_ID_PATTERN."""
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise UnsafeName(f"{run_id!r} is not a run id: letters, digits and . _ ~ : + - only, up to 250")
    folder = run_folder(run_id)
    if not RUN_FOLDER.fullmatch(folder):  # run_folder's own promise, checked where it guards a path
        raise UnsafeName(f"run {run_id!r} maps to the folder {folder!r}, not a plain name under runs/")
    return folder


def page_path(run_id):
    """The run's page relative to the benchmarks page, or None for a run id that has no page."""
    try:
        folder_of(run_id)
    except UnsafeName:
        return None
    return "runs/" + quote(run_id, safe="")


def owned_folder(storage, run_id):
    """The run's folder, or None when nothing of the run is stored yet; NotThisRun when its owner marker
    names another run (two ids sharing a folder: never shown as each other's)."""
    folder = folder_of(run_id)
    marker = checked_key(storage, f"{folder}/{RUN_OWNER_MARKER}")
    if not storage.exists(marker):  # every task claims the folder (claim_run_folder) before it writes there
        return None
    owner = storage.get_bytes(marker).decode("utf-8", errors="replace")
    if owner != run_id:
        raise NotThisRun(f"the folder {folder} belongs to run {owner!r}, not {run_id!r}")
    return folder


def read_metrics(storage, folder):
    """The run's metrics.json, or None when it was not written; UnreadableFile when it is not a JSON
    object."""
    key = checked_key(storage, f"{folder}/{METRICS_FILE}")
    if not storage.exists(key):
        return None
    metrics = read_json(storage, key)
    if not isinstance(metrics, dict):
        raise UnreadableFile(f"{key}: not a JSON object but a {type(metrics).__name__}")
    return metrics


def records_failure(metrics):
    """Whether metrics.json holds a diagnosis (diagnose_failure's "failure"), not a success's figures."""
    return isinstance((metrics or {}).get(FAILURE_KEY), dict)


def result_files(storage, folder):
    """[{"name", "size"}] of the files directly in the run's results/, by name; partial writes left out."""
    prefix = f"{folder}/results/"
    names = [key[len(prefix):] for key in storage.list_keys(f"{folder}/results") if key.startswith(prefix)]
    return [{"name": name, "size": storage.size(f"{prefix}{name}")}
            for name in sorted(names) if re.match(SAFE_NAME, name)]


def result_key(storage, folder, name):
    """The key of results/<name>, checked; UnsafeName for a name that is not a plain file name, NoResults
    when the run has no such file."""
    if not re.match(SAFE_NAME, name):
        raise UnsafeName(f"{name!r} is not the name of a result file")
    key = checked_key(storage, f"{folder}/results/{name}")
    if not storage.exists(key):
        raise NoResults(f"{folder} has no results/{name}")
    return key


def metrics_key(storage, folder):
    key = checked_key(storage, f"{folder}/{METRICS_FILE}")
    if not storage.exists(key):
        raise NoResults(f"{folder} has no {METRICS_FILE}")
    return key


def neighbours(storage, folder, metrics):
    """The run's top_neighbours.json ({movie id: {"title", "neighbours"}}), or None: not written yet, or the
    run's engine (metrics.json "engine") is not the similarity engine, whose results alone have them."""
    if (metrics or {}).get("engine", DEFAULT_ENGINE) != DEFAULT_ENGINE:
        return None
    key = checked_key(storage, f"{folder}/results/{NEIGHBOURS_FILE}")
    return neighbours_at(storage, key) if storage.exists(key) else None


def checked_key(storage, key):
    """`key` if it stays under the storage root: on this machine, where a link could lead elsewhere, its
    real path must be under the root's; UnsafeName otherwise."""
    if isinstance(storage, LocalStorage):
        path = storage.local_path(key).resolve()
        if not path.is_relative_to(storage.root):
            raise UnsafeName(f"{key} leads out of the storage root {storage.root}")
    return key


def local_file(storage, key):
    """The checked key's file on this machine, or None when the storage is S3."""
    return storage.local_path(checked_key(storage, key)) if isinstance(storage, LocalStorage) else None


def s3_chunks(storage, key):
    """The S3 object's bytes in chunks, streamed: a results CSV may be larger than memory allows."""
    body = storage.hook.get_key(storage.key(key), bucket_name=storage.bucket).get()["Body"]
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()
