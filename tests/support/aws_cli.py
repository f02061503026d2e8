"""`aws s3 cp` for the EMR double's bootstrap actions: the AWS CLI's download, against the emulated S3.

Usage, as the CLI's: aws s3 cp [--recursive] [--only-show-errors] [--quiet] [--no-progress] SOURCE DEST,
SOURCE an s3:// URI and DEST a local path. The S3 endpoint is AWS_ENDPOINT_URL (the double's moto
server). What the CLI would do: a key to a file (into DEST when it is a folder), every key under a prefix
to DEST with their relative paths (nothing, and no error, when there is none), a missing key an error
with exit code 1. Anything else the CLI accepts is refused here with exit code 252, so that a bootstrap
relying on more than this fails loudly rather than silently.
"""
import os
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

QUIET_OPTIONS = ("--only-show-errors", "--quiet", "--no-progress")
USAGE_ERROR = 252


def usage_error(message):
    print(f"aws: error: {message} (the EMR double's aws runs only `aws s3 cp [--recursive] s3://... PATH`)",
          file=sys.stderr)
    return USAGE_ERROR


def parse(argv):
    """(recursive, source, destination) of an `s3 cp` command line, or a usage error's message."""
    if argv[:2] != ["s3", "cp"]:
        return f"unsupported command {' '.join(argv[:2])!r}"
    recursive, paths = False, []
    for arg in argv[2:]:
        if arg == "--recursive":
            recursive = True
        elif arg.startswith("-") and arg not in QUIET_OPTIONS:
            return f"unsupported option {arg!r}"
        elif not arg.startswith("-"):
            paths.append(arg)
    if len(paths) != 2 or not paths[0].startswith("s3://") or paths[1].startswith("s3://"):
        return f"expected an s3:// SOURCE and a local DEST, got {paths}"
    return recursive, paths[0], paths[1]


def copy_key(s3, bucket, key, destination):
    destination = Path(destination)
    if destination.is_dir() or str(destination).endswith("/"):
        destination = destination / key.rsplit("/", 1)[-1]
    destination.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(destination))


def copy_prefix(s3, bucket, prefix, destination):
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            copy_key(s3, bucket, item["Key"], Path(destination) / item["Key"][len(prefix):])


def main(argv):
    parsed = parse(argv)
    if isinstance(parsed, str):
        return usage_error(parsed)
    recursive, source, destination = parsed
    bucket, _, key = source.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        if recursive:
            copy_prefix(s3, bucket, key, destination)
        else:
            copy_key(s3, bucket, key, destination)
    except ClientError as error:
        print(f"fatal error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
