"""Getting a dataset's files and staging them once by checksum.

The files come from a source folder or a verified GroupLens download.
"""
import hashlib
import json
import logging
import shutil
import urllib.request
import zipfile
from pathlib import Path

from movielens_emr.data.datasets import GROUPLENS, SAMPLE_DATA
from movielens_emr.data.storage import dataset_folder

log = logging.getLogger(__name__)
STAGED_MARKER = "_STAGED.json"


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
