"""Getting a dataset's files and staging them once by checksum.

The files come from a source folder or a verified GroupLens download.
"""
import hashlib
import json
import logging
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path

from movielens_emr.data.datasets import GROUPLENS, SAMPLE_DATA
from movielens_emr.data.storage import dataset_folder
from movielens_emr.emr.wheelhouse import REQUIREMENTS_FILE
from movielens_emr.engine.block_plan import BlockPlanUnavailable, run_block_plan
from movielens_emr.engine.mrjob_similarity import JOB_FILE, planned_skew

log = logging.getLogger(__name__)
STAGED_MARKER = "_STAGED.json"
BOOTSTRAP_FILE = Path(__file__).resolve().parents[1] / "emr" / "bootstrap" / "install_job_requirements.sh"
WHEELHOUSE_ROOT = "wheelhouses"
BLOCK_PLAN_FILE = "block_plan.json"


class ChecksumMismatch(RuntimeError):
    """A downloaded archive whose checksum is not the published one."""


def dataset_source_files(dataset, source_dir, cache_dir, base_url=GROUPLENS):
    """{file name: local path} of a release: bundled, from source_dir/<name>/ if given, else a download.

    A download is verified against the checksum GroupLens publishes.
    """
    if dataset.bundled or source_dir:
        folder = (SAMPLE_DATA if dataset.bundled else Path(source_dir)) / dataset.name
        missing = [name for name in dataset.files if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{dataset.name}: {', '.join(missing)} not found in {folder} (MOVIELENS_SOURCE_DIR); "
                f"it should hold {', '.join(dataset.files)}")
        return {name: folder / name for name in dataset.files}
    return _downloaded_files(dataset, Path(cache_dir), f"{base_url}/{dataset.name}.zip")


def _downloaded_files(dataset, cache_dir, url):
    archive = cache_dir / f"{dataset.name}.zip"
    if not archive.exists() or file_md5(archive) != dataset.zip_md5:
        _download(url, archive)
    actual = file_md5(archive)
    if actual != dataset.zip_md5:
        archive.unlink()
        raise ChecksumMismatch(
            f"{url}: md5 {actual}, but GroupLens publishes {dataset.zip_md5}; download removed")
    folder = cache_dir / dataset.name
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        for name in dataset.files:
            with zipped.open(f"{dataset.name}/{name}") as source, open(folder / name, "wb") as target:
                shutil.copyfileobj(source, target)
    return {name: folder / name for name in dataset.files}


def _download(url, archive):
    archive.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    partial = archive.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as target:
        shutil.copyfileobj(response, target, length=1 << 20)
    partial.rename(archive)
    log.info("downloaded %s (%s bytes)", url, f"{archive.stat().st_size:,}")


def file_md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_checksum(files):
    """sha256 (first 16 hex digits) over the files' names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        with open(files[name], "rb") as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class StagedDatasetCorrupt(RuntimeError):
    """A staged dataset whose files still differ from the source after being uploaded again."""


def stage_dataset(storage, dataset, files):
    """Upload a release's files under datasets/<name>/<checksum>/ unless already there; describe the result.

    Before the files are used they are checked against the source (staged_intact); a staged copy that
    fails the check is uploaded again. Each file is written whole (LocalStorage renames a finished
    temporary file; an S3 put is one object), so two runs staging one new dataset at once never show a
    reader a partial file.
    """
    checksum = content_checksum(files)
    folder = dataset_folder(dataset.name, checksum)
    staged = {
        "dataset": dataset.name,
        "checksum": checksum,
        "folder": folder,
        "ratings_uris": [storage.uri(f"{folder}/{name}") for name in dataset.ratings_files],
        "movies_uri": storage.uri(f"{folder}/{dataset.movies_file}"),
    }
    if storage.exists(f"{folder}/{STAGED_MARKER}"):
        if staged_intact(storage, folder, files, checksum):
            log.info("%s already staged at %s: nothing uploaded", dataset.name, storage.uri(folder))
            return {**staged, "uploaded": []}
        log.warning("%s staged at %s differs from its source: uploading it again",
                    dataset.name, storage.uri(folder))
    _upload(storage, folder, files)
    if not staged_intact(storage, folder, files, checksum):
        raise StagedDatasetCorrupt(
            f"{storage.uri(folder)} still differs from {dataset.name}'s source after upload")
    return {**staged, "uploaded": sorted(files)}


def _upload(storage, folder, files):
    for name, path in sorted(files.items()):
        log.info("uploading %s (%s bytes) to %s", name, f"{path.stat().st_size:,}",
                 storage.uri(f"{folder}/{name}"))
        storage.put_file(path, f"{folder}/{name}")
    # The marker goes last, so an interrupted upload is redone rather than trusted.
    storage.put_bytes(json.dumps({"files": sorted(files)}).encode(), f"{folder}/{STAGED_MARKER}")


def staged_intact(storage, folder, files, checksum):
    """Whether the staged copy matches the source: on a local root, its content checksum (every byte is
    read again); on S3, each object's size (a put there lands whole or not at all)."""
    base = storage.local_path(folder)
    if base is not None:
        staged_files = {name: base / name for name in files}
        present = all(path.is_file() for path in staged_files.values())
        return present and content_checksum(staged_files) == checksum
    return all(storage.size(f"{folder}/{name}") == path.stat().st_size for name, path in files.items())


def stage_job_files(storage, run_prefix, node, wheels, requirements_file=REQUIREMENTS_FILE):
    """The job file, the bootstrap script and the pinned requirements copied into the run's job/ folder, and
    node's wheels ({file name: path}) staged once per content; {"job", "bootstrap", "requirements",
    "wheelhouse"}: their URIs."""
    uris = {}
    sources = (("job", JOB_FILE, JOB_FILE.name), ("bootstrap", BOOTSTRAP_FILE, BOOTSTRAP_FILE.name),
               ("requirements", Path(requirements_file), REQUIREMENTS_FILE.name))
    for role, path, name in sources:
        key = f"{run_prefix}/job/{name}"
        storage.put_file(path, key)
        uris[role] = storage.uri(key)
    uris["wheelhouse"] = stage_wheelhouse(storage, node, wheels)
    return uris


def stage_wheelhouse(storage, node, wheels):
    """Upload wheels under wheelhouses/<node name>/<checksum>/ unless already there; the folder's URI."""
    folder = f"{WHEELHOUSE_ROOT}/{node.name}/{content_checksum(wheels)}"
    if storage.exists(f"{folder}/{STAGED_MARKER}"):
        log.info("the %s wheels are already staged at %s", node.name, storage.uri(folder))
        return storage.uri(folder)
    for name, path in sorted(wheels.items()):
        storage.put_file(path, f"{folder}/{name}")
    # The marker goes last, so an interrupted upload is redone rather than trusted.
    storage.put_bytes(json.dumps({"files": sorted(wheels)}).encode(), f"{folder}/{STAGED_MARKER}")
    log.info("staged %d %s wheels at %s", len(wheels), node.name, storage.uri(folder))
    return storage.uri(folder)


def stage_block_plan(storage, run_prefix, config, ratings_paths):
    """The run's stage 2 block plan, from its ratings files (block_plan.run_block_plan), written to
    the run's job/ folder; {"uri", "movie_blocks", "reduce_tasks", "planned_skew", "ratings", "seconds"}.

    A plan only balances stage 2's reduce tasks: the answer is the same without one. So a plan that
    cannot be made (ids too long for its keys, a file it cannot read, too little memory on this
    worker) does not fail the run: stage 2 deals its block pairs in turn, as the job does without a
    plan, the log warns, and the summary says why: {"uri": None, "skipped": reason}.
    """
    key = f"{run_prefix}/job/{BLOCK_PLAN_FILE}"
    started = time.monotonic()
    try:
        plan, ratings = run_block_plan(ratings_paths, config)
    except (BlockPlanUnavailable, OSError, MemoryError) as error:
        storage.delete_key(key)  # an earlier try's plan is not this one's
        reason = f"{type(error).__name__}: {error}"
        log.warning("no stage 2 block plan (%s): stage 2 deals its block pairs onto its reduce tasks in turn",
                    reason)
        return {"uri": None, "skipped": reason}
    storage.put_bytes(json.dumps(plan).encode(), key)
    summary = {"uri": storage.uri(key), "movie_blocks": plan["movie_blocks"],
               "reduce_tasks": plan["reduce_tasks"], "planned_skew": round(planned_skew(plan), 3),
               "ratings": ratings, "seconds": round(time.monotonic() - started, 3)}
    log.info("stage 2 block plan %s: measured on %d ratings in %.1f s; %d blocks, %d reduce tasks, "
             "planned work skew %.3f", summary["uri"], ratings, summary["seconds"], summary["movie_blocks"],
             summary["reduce_tasks"], summary["planned_skew"])
    return summary
