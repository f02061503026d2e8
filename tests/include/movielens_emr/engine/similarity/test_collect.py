"""The result files streamed from part files: the same bytes as the in-memory results, in bounded memory."""
import gzip
import json
import random
import tempfile
import tracemalloc

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import LocalStorage, S3Storage
from movielens_emr.engine.similarity.collect import collect_output
from movielens_emr.engine.similarity.results import (
    MalformedOutput,
    parse_output_line,
    similarities_csv,
    sorted_rows,
    top_neighbours,
)

OUTPUT, RESULTS = "runs/r/output/stage-3", "runs/r/results"
TITLES = ["Toy Story (1995)", "Two, The (1992)", 'Say "Cheese" (2001)', "Amélie (2001)", None,
          "Ça, ça (1990)"]
IDS = [str(number) for number in (1, 2, 3, 7, 10, 11, 100, 2001)] + ["07", "x9", "abc"]


def synthetic_lines(count, seed=7):
    """Job output lines in no particular order, with ties in score, missing titles, commas, quotes,
    non-ASCII titles, and ids that sort alike ("7" and "07") or are not numbers."""
    draw = random.Random(seed)
    for _ in range(count):
        movie, similar = draw.sample(IDS, 2)
        score = draw.choice([0.5, 0.25, round(draw.uniform(-1, 1), draw.randint(1, 17))])
        key = [movie, draw.choice(TITLES)]
        value = [similar, draw.choice(TITLES), score, draw.randint(1, 500)]
        yield json.dumps(key) + "\t" + json.dumps(value)


def write_parts(folder, lines, parts=3):
    """The lines dealt round-robin into part-00000.. (and a file that is not a part file); their text."""
    folder.mkdir(parents=True)
    files = [open(folder / f"part-{number:05d}", "w", encoding="utf-8") for number in range(parts)]
    for number, line in enumerate(lines):
        files[number % parts].write(line + "\n")
    for file in files:
        file.close()
    (folder / "_SUCCESS").write_text("")
    return [(folder / f"part-{number:05d}").read_text(encoding="utf-8") for number in range(parts)]


def expected_files(part_texts):
    """similarities.csv and top_neighbours.json as the in-memory results make them from the part files."""
    rows = sorted_rows(parse_output_line(line) for text in part_texts for line in text.splitlines() if line)
    neighbours = json.dumps(top_neighbours(rows), ensure_ascii=False, indent=1)
    return similarities_csv(rows).encode(), neighbours.encode(), len(rows), len(top_neighbours(rows))


@pytest.fixture
def storage(tmp_path, monkeypatch):
    """A local storage whose whole-file reads fail, and a temp folder of its own to check for leftovers."""
    storage = LocalStorage(tmp_path / "store")
    monkeypatch.setattr(storage, "get_bytes", lambda key: pytest.fail(f"read {key} whole"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return storage


@pytest.mark.parametrize("run_rows, fan_in", [(10_000, 64), (50, 3), (7, 2)])
def test_the_files_are_byte_identical_to_the_in_memory_results(storage, tmp_path, run_rows, fan_in):
    parts = write_parts(storage.root / OUTPUT, synthetic_lines(3000))
    csv_bytes, json_bytes, pairs, movies = expected_files(parts)
    summary = collect_output(storage, OUTPUT, RESULTS, run_rows=run_rows, fan_in=fan_in)
    assert (storage.root / RESULTS / "similarities.csv").read_bytes() == csv_bytes
    assert (storage.root / RESULTS / "top_neighbours.json").read_bytes() == json_bytes
    assert summary == {"output_pairs": pairs, "movies": movies,
                       "similarities_csv": storage.uri(f"{RESULTS}/similarities.csv")}
    assert sorted(path.name for path in (storage.root / RESULTS).iterdir()) == ["similarities.csv",
                                                                                "top_neighbours.json"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_large_csv_is_gzipped_and_replaces_the_plain_one(storage):
    csv_bytes, json_bytes, _, _ = expected_files(write_parts(storage.root / OUTPUT, synthetic_lines(500)))
    summary = collect_output(storage, OUTPUT, RESULTS, gzip_above_bytes=len(csv_bytes))
    assert summary["similarities_csv"] == storage.uri(f"{RESULTS}/similarities.csv")  # not above: plain
    summary = collect_output(storage, OUTPUT, RESULTS, run_rows=60, gzip_above_bytes=len(csv_bytes) - 1)
    assert summary["similarities_csv"] == storage.uri(f"{RESULTS}/similarities.csv.gz")
    compressed = (storage.root / RESULTS / "similarities.csv.gz").read_bytes()
    assert gzip.decompress(compressed) == csv_bytes
    assert not (storage.root / RESULTS / "similarities.csv").exists()
    assert (storage.root / RESULTS / "top_neighbours.json").read_bytes() == json_bytes
    collect_output(storage, OUTPUT, RESULTS, run_rows=13, gzip_above_bytes=1000)
    assert (storage.root / RESULTS / "similarities.csv.gz").read_bytes() == compressed  # no name, no time
    collect_output(storage, OUTPUT, RESULTS)
    assert sorted(path.name for path in (storage.root / RESULTS).iterdir()) == ["similarities.csv",
                                                                                "top_neighbours.json"]


def test_empty_part_files_give_a_header_and_an_empty_object(storage):
    write_parts(storage.root / OUTPUT, [])
    assert collect_output(storage, OUTPUT, RESULTS)["output_pairs"] == 0
    assert (storage.root / RESULTS / "similarities.csv").read_text() == similarities_csv([])
    assert (storage.root / RESULTS / "top_neighbours.json").read_text() == "{}"


def test_no_part_files_is_an_error(storage):
    (storage.root / OUTPUT).mkdir(parents=True)
    (storage.root / OUTPUT / "_SUCCESS").write_text("")
    with pytest.raises(FileNotFoundError, match="no part files in .*stage-3: the final stage wrote nothing"):
        collect_output(storage, OUTPUT, RESULTS)


def test_a_malformed_line_is_reported_with_its_file_and_line_and_nothing_is_written(storage, tmp_path):
    write_parts(storage.root / OUTPUT, [*synthetic_lines(4), "not json", *synthetic_lines(4)])
    with pytest.raises(MalformedOutput, match=r"part-00001, line 2: not a similarity line"):
        collect_output(storage, OUTPUT, RESULTS, run_rows=2)
    assert not (storage.root / RESULTS).exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_s3_part_files_are_streamed_and_the_files_uploaded(tmp_path, monkeypatch):
    csv_bytes, json_bytes, pairs, _ = expected_files(write_parts(tmp_path / "parts", synthetic_lines(300)))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        for part in (tmp_path / "parts").iterdir():
            s3.upload_file(str(part), "bucket", f"pre/{OUTPUT}/{part.name}")
        storage = S3Storage("bucket", "pre", "aws_default")
        monkeypatch.setattr(storage, "get_bytes", lambda key: pytest.fail(f"read {key} whole"))
        summary = collect_output(storage, OUTPUT, RESULTS, run_rows=40, fan_in=3)
        read = lambda key: s3.get_object(Bucket="bucket", Key=f"pre/{RESULTS}/{key}")["Body"].read()  # noqa: E731
        assert (read("similarities.csv"), read("top_neighbours.json")) == (csv_bytes, json_bytes)
    assert summary["output_pairs"] == pairs
    assert summary["similarities_csv"] == f"s3://bucket/pre/{RESULTS}/similarities.csv"


def collection_peak_bytes(storage, lines, run_rows, fan_in):
    """tracemalloc's peak of the Python memory allocated while collecting `lines` from part files."""
    storage.delete_prefix("runs")
    write_parts(storage.root / OUTPUT, synthetic_lines(lines))
    tracemalloc.start()
    try:
        summary = collect_output(storage, OUTPUT, RESULTS, run_rows=run_rows, fan_in=fan_in)
        assert summary["output_pairs"] == lines
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_output(storage):
    """Four times the rows, about the same peak: the rows held are bounded by run_rows and the fan-in,
    not by the output. Holding 16,000 rows at once would take over 2.4 MB (each row at least a tuple
    of six, a float and its strings); the peak stays under half of that, and within a quarter of the
    peak of 4,000 rows. (benchmarks/collect_memory.py measures 10^7 rows.)"""
    small = collection_peak_bytes(storage, 4000, run_rows=500, fan_in=4)
    large = collection_peak_bytes(storage, 16_000, run_rows=500, fan_in=4)
    assert large < 1_200_000
    assert large < small * 1.25
