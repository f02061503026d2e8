"""Canary AWS credentials for a test run, and a search for them in what the run left behind."""
import base64
import gzip
import math
import secrets
import sqlite3
import string
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

# The prefix of a long-term IAM user's key id, kept apart from the random rest: a whole key id
# written in this file would be flagged by the scan of tracked files in tests/test_repository.py.
ACCESS_KEY_ID_PREFIX = "AKIA"
ACCESS_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
# Real secrets also use "+" and "/"; without them a URL- or JSON-escaped copy, or a URL-safe base64
# one, reads the same as the plain form, so searching for the plain forms finds those copies too.
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40


@dataclass(frozen=True)
class Canary:
    """Credentials of a real key's shape that belong to no account: any copy found is a leak."""

    access_key_id: str
    secret_access_key: str

    def named_values(self):
        return {"access key id": self.access_key_id, "secret access key": self.secret_access_key}


def make_canary():
    """A fresh canary, different in every test run."""
    key_id_rest = "".join(secrets.choice(ACCESS_KEY_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return Canary(access_key_id=ACCESS_KEY_ID_PREFIX + key_id_rest, secret_access_key=secret)


def base64_fragments(value):
    """The base64 text that value always turns into, whatever precedes it in the encoded bytes.

    Base64 encodes 3 bytes as 4 characters, so the encoding of value depends on where it starts
    modulo 3: one fragment per offset, each only the characters made of value's bits alone.
    """
    raw, fragments = value.encode(), []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        fragments.append(encoded[math.ceil(offset * 8 / 6):(offset + len(raw)) * 8 // 6])
    return fragments


def leak_forms(canary):
    """(description, text) of every form a leak of the canary could take: as itself, and in base64.

    The canary is alphanumeric, so its base64 holds no "+" or "/": URL-safe base64 is the same text.
    """
    forms = {}
    for name, value in canary.named_values().items():
        forms.setdefault(value, f"the {name}")
        for fragment in base64_fragments(value):
            forms.setdefault(fragment, f"the {name} in base64")
    return [(description, text) for text, description in forms.items()]


def find_leaks(places, canary):
    """One line per copy of the canary in {place: text}, naming the place, the line and what leaked."""
    leaks = []
    for place, text in places.items():
        for description, form in leak_forms(canary):
            if form not in text:  # the cheap check first: most places hold no leak at all
                continue
            lines = [number for number, line in enumerate(text.splitlines(), start=1) if form in line]
            leaks.append(f"{place}, line {', '.join(map(str, lines))}: {description}")
    return leaks


def readable(name, data):
    """The text of a file or object, gunzipped when its name ends in .gz."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def files_under(folder):
    """{path: text} of every file under folder."""
    return {str(path): readable(path.name, path.read_bytes())
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def s3_objects(s3, bucket, prefix):
    """{s3 URI: text} of every object under the prefix."""
    texts = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            data = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            texts[f"s3://{bucket}/{item['Key']}"] = readable(item["Key"], data)
    return texts


# Where the metadata database keeps a run's values that the UI shows:
# (table, the columns that name a row, the column holding its text).
RUN_VALUES = (
    ("xcom", ("task_id", "map_index", "key"), "value"),
    ("rendered_task_instance_fields", ("task_id", "map_index"), "rendered_fields"),
)


def run_values(database, run_id):
    """{"<table> <column>=<value> ...": text as stored} of one run's XComs and rendered fields (SQLite)."""
    texts = {}
    with closing(sqlite3.connect(database)) as connection:
        for table, naming, stored in RUN_VALUES:
            query = f"SELECT {', '.join(naming)}, {stored} FROM {table} WHERE run_id = ?"
            for *names, value in connection.execute(query, (run_id,)):
                row = (f"{column}={name}" for column, name in zip(naming, names, strict=True))
                place = " ".join([table, *row])
                texts[place] = value if isinstance(value, str) else repr(value)
    return texts
