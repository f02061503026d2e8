"""One storage root for datasets and runs: a local folder or an s3://bucket/prefix, behind one small interface."""
import re
import shutil
from pathlib import Path

from movielens_emr.settings import AWS_CLIENT_CONFIG, DEFAULT_LOCAL_ROOT


def run_folder(run_id):
    """The folder name of a run: its id with every character outside [A-Za-z0-9._-] made '_'."""
    return "runs/" + re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def dataset_folder(name, checksum):
    return f"datasets/{name}/{checksum}"


class LocalStorage:
    """A folder on this machine; keys are relative paths."""

    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self):
        return f"LocalStorage({str(self.root)!r})"

    def uri(self, key):
        return str(self.root / key)

    def exists(self, key):
        return (self.root / key).exists()

    def put_file(self, local_path, key):
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, target)

    def put_bytes(self, data, key):
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get_bytes(self, key):
        return (self.root / key).read_bytes()

    def list_keys(self, prefix):
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(path.relative_to(self.root)) for path in base.rglob("*") if path.is_file())

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

    def exists(self, key):
        return self.hook.check_for_key(self.key(key), bucket_name=self.bucket)

    def put_file(self, local_path, key):
        self.hook.load_file(str(local_path), self.key(key), bucket_name=self.bucket, replace=True, encrypt=True)

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
