"""One storage root for datasets and runs: a local folder or s3://bucket/prefix, behind one interface."""
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from movielens_emr.config.settings import AWS_CLIENT_CONFIG, DEFAULT_LOCAL_ROOT

PLAIN_RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
ENCODED_SUFFIX = re.compile(r"--[0-9a-f]{16}$")
RUN_OWNER_MARKER = "_RUN_ID"
PARTIAL_SUFFIX = ".partial"


def run_folder(run_id):
    """runs/<name>, a different name for every run id.

    A plain id (letters, digits, '.', '_', '-'; not starting with '.'; up to 200 characters) is its own
    name. Any other id, and a plain one that ends like an encoded name, becomes its characters outside
    [A-Za-z0-9._-] made '_', then '--' and 16 hex digits of its sha256. A plain name never ends in that
    suffix and an encoded one always does, so no two ids share a folder short of a sha256 collision,
    which the folder's owner marker (claim_run_folder) still refuses.
    """
    if PLAIN_RUN_ID.fullmatch(run_id) and not ENCODED_SUFFIX.search(run_id):
        return f"runs/{run_id}"
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:200].lstrip(".")
    return f"runs/{readable}--{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


class RunFolderTaken(RuntimeError):
    """The run's folder belongs to another run: nothing of this run is written there."""


def claim_run_folder(storage, run_id):
    """The run's folder, after making sure it is this run's: its owner marker (the exact run id) is
    written when absent, and RunFolderTaken is raised when it names another run. Every task that
    writes or deletes under the run folder claims it first."""
    folder = run_folder(run_id)
    marker = f"{folder}/{RUN_OWNER_MARKER}"
    if not storage.exists(marker):
        storage.put_bytes(run_id.encode(), marker)
    owner = storage.get_bytes(marker).decode("utf-8", errors="replace")
    if owner != run_id:
        raise RunFolderTaken(f"run folder {storage.uri(folder)} belongs to run {owner!r}, not {run_id!r}: "
                             "refusing to write into it")
    return folder


def dataset_folder(name, checksum):
    return f"datasets/{name}/{checksum}"


def _write_atomically(target, write):
    """Call write(file) on a temporary file beside target, flush it to disk, then rename it onto target:
    a reader sees the old file or the whole new one, never a part."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
    try:
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _is_partial(path):
    return path.name.startswith(".") and path.name.endswith(PARTIAL_SUFFIX)


class LocalStorage:
    """A folder on this machine; keys are relative paths. Writes are atomic: temporary file, fsync, rename."""

    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self):
        return f"LocalStorage({str(self.root)!r})"

    def uri(self, key):
        return str(self.root / key)

    def local_path(self, key):
        """The key's path on this machine."""
        return self.root / key

    def ensure_bucket(self):
        """Nothing to create: the folder is made as keys are written. False, as S3Storage's for a bucket
        that exists."""
        return False

    def exists(self, key):
        return (self.root / key).exists()

    def size(self, key):
        """The object's size in bytes, or None when it is missing."""
        path = self.root / key
        return path.stat().st_size if path.is_file() else None

    def put_file(self, local_path, key):
        with open(local_path, "rb") as source:
            _write_atomically(self.root / key, lambda out: shutil.copyfileobj(source, out))

    def put_bytes(self, data, key):
        _write_atomically(self.root / key, lambda out: out.write(data))

    def get_bytes(self, key):
        return (self.root / key).read_bytes()

    def list_keys(self, prefix):
        """The keys under prefix, without the temporary files of writes under way."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(path.relative_to(self.root)) for path in base.rglob("*")
                      if path.is_file() and not _is_partial(path))

    def delete_prefix(self, prefix):
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def delete_key(self, key):
        (self.root / key).unlink(missing_ok=True)


class S3Storage:
    """s3://bucket/prefix through the Amazon provider's S3Hook; objects are written encrypted (SSE-S3)."""

    def __init__(self, bucket, prefix, aws_conn_id):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.hook = S3Hook(aws_conn_id=aws_conn_id, config=AWS_CLIENT_CONFIG)

    def __repr__(self):
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def key(self, key):
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key):
        return f"s3://{self.bucket}/{self.key(key)}"

    def local_path(self, key):
        """None: S3 objects have no path on this machine."""
        return None

    def exists(self, key):
        return self.hook.check_for_key(self.key(key), bucket_name=self.bucket)

    def size(self, key):
        """The object's size in bytes, or None when it is missing."""
        head = self.hook.head_object(self.key(key), bucket_name=self.bucket)
        return head["ContentLength"] if head else None

    # A put completes as one object: S3 shows a reader the old object or the whole new one, never a part.
    def put_file(self, local_path, key):
        self.hook.load_file(
            str(local_path), self.key(key), bucket_name=self.bucket, replace=True, encrypt=True)

    def put_bytes(self, data, key):
        self.hook.load_bytes(data, self.key(key), bucket_name=self.bucket, replace=True, encrypt=True)

    def get_bytes(self, key):
        return self.hook.get_key(self.key(key), bucket_name=self.bucket).get()["Body"].read()

    def list_keys(self, prefix):
        keys = self.hook.list_keys(bucket_name=self.bucket, prefix=self.key(prefix).rstrip("/") + "/") or []
        return sorted(key[len(self.prefix) + 1:] if self.prefix else key for key in keys)

    def delete_prefix(self, prefix):
        keys = self.hook.list_keys(bucket_name=self.bucket, prefix=self.key(prefix).rstrip("/") + "/")
        if keys:
            self.hook.delete_objects(bucket=self.bucket, keys=keys)

    def delete_key(self, key):
        self.hook.delete_objects(bucket=self.bucket, keys=[self.key(key)])

    def ensure_bucket(self):
        """Create the bucket if it is missing, with every form of public access blocked."""
        if self.hook.check_for_bucket(self.bucket):
            return False
        self.hook.create_bucket(bucket_name=self.bucket)
        self.hook.get_conn().put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={name: True for name in (
                "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")})
        return True


def open_storage(root, aws_conn_id="aws_default"):
    """The storage behind a root: s3://bucket[/prefix] or a local folder (default ~/.movielens-emr)."""
    root = root or DEFAULT_LOCAL_ROOT
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", root)
    if match:
        return S3Storage(match.group(1), match.group(2), aws_conn_id)
    if "://" in root:
        raise ValueError(f"storage root {root!r}: use s3://bucket/prefix or a local folder")
    return LocalStorage(root)
