"""A run's result files, streamed from the final stage's part files in memory that does not grow with them.

The part files are in no global order (each reducer sorts its keys as JSON text), so the rows are put in
output order (results.output_order) by an external merge sort: runs of at most RUN_ROWS rows are sorted
in memory and written to temporary files, then merged with heapq.merge, at most MERGE_FAN_IN at a time.
Memory holds at most RUN_ROWS rows, or MERGE_FAN_IN batches of RUN_BATCH_ROWS rows, and one movie's
neighbours; the temporary folder (in TMPDIR) holds about twice the CSV's size at the most.
"""
import csv
import gzip
import heapq
import itertools
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from movielens_emr.data.storage import LocalStorage, S3Storage
from movielens_emr.engine.similarity.results import (
    CSV_COLUMNS,
    MalformedOutput,
    neighbour_groups,
    output_order,
    parse_output_line,
    write_top_neighbours_json,
)

RUN_ROWS = 100_000  # rows sorted in memory at once: about 0.7 KB of RSS each with their titles: ~70 MB
MERGE_FAN_IN = 64  # sorted runs merged at once; more runs are merged in passes (10^8 rows: 1,000 -> 16 -> 1)
RUN_BATCH_ROWS = 256  # rows per pickled batch of a run file: what each run being merged holds in memory
GZIP_ABOVE_BYTES = 100 * 1024**2  # a CSV larger than this, uncompressed, is stored as similarities.csv.gz
GZIP_LEVEL = 6  # gzip's own default: level 9 is several times slower for a few per cent
S3_READ_CHUNK_BYTES = 1024**2
CSV_NAME, JSON_NAME = "similarities.csv", "top_neighbours.json"


def collect_output(storage, output_folder, results_folder, run_rows=RUN_ROWS, fan_in=MERGE_FAN_IN,
                   gzip_above_bytes=GZIP_ABOVE_BYTES):
    """similarities.csv (.csv.gz above gzip_above_bytes) and top_neighbours.json in results_folder, from the
    part files in output_folder; {"output_pairs", "movies", "similarities_csv": the CSV's uri}.

    The part files are only read. The files go up through storage.put_file; the other form of the CSV
    left by an earlier collection of the same run is deleted, so that only one of them is there.
    """
    keys = part_keys(storage, output_folder)
    with tempfile.TemporaryDirectory(prefix="movielens-collect-") as temp:
        temp = Path(temp)
        runs = sorted_runs(part_rows(storage, keys), temp, run_rows)
        csv_file = CsvFile(temp / CSV_NAME, gzip_above_bytes)
        with csv_file, open(temp / JSON_NAME, "w", encoding="utf-8") as json_file:
            pairs, movies = write_result_files(merged_rows(runs, temp, fan_in), csv_file, json_file)
        csv_key = f"{results_folder}/{csv_file.path.name}"
        storage.put_file(csv_file.path, csv_key)
        storage.put_file(temp / JSON_NAME, f"{results_folder}/{JSON_NAME}")
    stale_key = f"{results_folder}/{CSV_NAME}" if csv_file.compressed else f"{results_folder}/{CSV_NAME}.gz"
    if storage.exists(stale_key):
        storage.delete_key(stale_key)
    return {"output_pairs": pairs, "movies": movies, "similarities_csv": storage.uri(csv_key)}


def part_keys(storage, output_folder):
    """The keys of the part files (part-*) in output_folder, in name order; an error when there are none."""
    keys = [key for key in storage.list_keys(output_folder) if key.rsplit("/", 1)[-1].startswith("part-")]
    if not keys:
        raise FileNotFoundError(
            f"no part files in {storage.uri(output_folder)}: the final stage wrote nothing")
    return keys


def part_lines(storage, key):
    """The lines (bytes) of one stored file, read as a stream: a local file, or an S3 object's body."""
    if isinstance(storage, LocalStorage):
        with open(storage.uri(key), "rb") as part:
            yield from part
    elif isinstance(storage, S3Storage):
        body = storage.hook.get_key(storage.key(key), bucket_name=storage.bucket).get()["Body"]
        try:
            yield from body.iter_lines(chunk_size=S3_READ_CHUNK_BYTES)
        finally:
            body.close()
    else:
        raise TypeError(f"cannot stream the files of {storage!r}: a LocalStorage or an S3Storage is needed")


def part_rows(storage, keys):
    """The rows of the part files, file after file, in line order; empty lines (the job has none) skipped."""
    for key in keys:
        for number, line in enumerate(part_lines(storage, key), 1):
            if line.rstrip(b"\r\n"):
                try:
                    yield parse_output_line(line.decode("utf-8"))
                except (MalformedOutput, UnicodeDecodeError) as error:
                    raise MalformedOutput(f"{storage.uri(key)}, line {number}: {error}") from None


def sorted_runs(rows, folder, run_rows):
    """Rows cut into runs of at most run_rows, each sorted (stably) in output order into a file in folder;
    the files in the order of the rows."""
    rows = iter(rows)
    return [write_run(sorted(run, key=output_order), folder)
            for run in iter(lambda: list(itertools.islice(rows, run_rows)), [])]


def merged_rows(runs, folder, fan_in):
    """The rows of the sorted run files in output order, merged fan_in at a time; rows that tie keep the
    order of their runs (heapq.merge prefers the earlier iterable), so the result is a stable sort."""
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, not {fan_in}")
    while len(runs) > fan_in:
        runs = [write_run(heapq.merge(*map(read_run, group), key=output_order), folder)
                for group in (runs[start:start + fan_in] for start in range(0, len(runs), fan_in))]
    return heapq.merge(*map(read_run, runs), key=output_order)


def write_run(rows, folder):
    """Rows into a new file in folder, pickled RUN_BATCH_ROWS at a time; its path."""
    descriptor, path = tempfile.mkstemp(dir=folder, suffix=".run")
    with os.fdopen(descriptor, "wb") as run:
        rows = iter(rows)
        for batch in iter(lambda: list(itertools.islice(rows, RUN_BATCH_ROWS)), []):
            pickle.dump(batch, run, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def read_run(path):
    """The rows of a file from write_run, one batch in memory at a time; the file is deleted once read."""
    with open(path, "rb") as run:
        while True:
            try:
                batch = pickle.load(run)  # our own file from write_run, never input from elsewhere
            except EOFError:
                break
            yield from batch
    path.unlink()


def write_result_files(rows, csv_file, json_file):
    """Rows in output order to the CSV (header first) and to top_neighbours.json; (pairs, movies)."""
    writer = csv.writer(csv_file, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    pairs = 0

    def written_to_csv():
        nonlocal pairs
        for row in rows:
            writer.writerow(row)
            pairs += 1
            yield row

    movies = write_top_neighbours_json(neighbour_groups(written_to_csv()), json_file)
    return pairs, movies


class CsvFile:
    """A text file written as UTF-8 to `path` until it grows past `gzip_above_bytes`, then moved into
    `path`.gz and written there, gzip-compressed (with no name or time in the header: the same text gives
    the same bytes). `path` and `compressed` tell which file it is once closed."""

    def __init__(self, path, gzip_above_bytes):
        self.path, self.gzip_above_bytes = Path(path), gzip_above_bytes
        self.size, self.compressed = 0, False
        self.raw = self.file = open(self.path, "wb")

    def write(self, text):
        data = text.encode("utf-8")
        self.file.write(data)
        self.size += len(data)
        if self.size > self.gzip_above_bytes and not self.compressed:
            self.compress()

    def compress(self):
        """The text so far into path.gz, and path.gz the file from now on."""
        self.raw.close()
        plain, self.path = self.path, self.path.with_name(self.path.name + ".gz")
        self.raw = open(self.path, "wb")
        self.file = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=GZIP_LEVEL, mtime=0)
        with open(plain, "rb") as text_so_far:
            shutil.copyfileobj(text_so_far, self.file, S3_READ_CHUNK_BYTES)
        plain.unlink()
        self.compressed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.file.close()
        self.raw.close()
