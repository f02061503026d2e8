"""A run's stage 2 block plan from its ratings files: the job's parsing rules and sample, the run's layout."""
import json
import logging
import math

import numpy as np
import pytest

from benchmarks import reference
from movielens_emr.config.params import validate_run_config
from movielens_emr.data.storage import LocalStorage
from movielens_emr.engine.similarity import block_plan
from movielens_emr.engine.similarity.block_plan import (
    BLOCK_PLAN_FILE,
    TARGET_DEALT_SKEW,
    BlockPlanUnavailable,
    balanced_routes,
    block_pair_work,
    dealt_skew,
    line_chunks,
    mass_blocks,
    movie_blocks_for,
    parse_ratings,
    plan_from_keys,
    read_rating_keys,
    routed_skew,
    run_block_plan,
    stage2_layout,
    stage_block_plan,
    user_slices,
    write_block_plan,
)
from movielens_emr.engine.similarity.block_plan import block_plan as plan_of_ratings
from movielens_emr.engine.similarity.job import MAX_BLOCK_MOVIES, job_kernel

from conftest import REPO

SAMPLE_RATINGS = REPO / "include" / "sample_data" / "ml-latest-small-sample" / "ratings.csv"


@pytest.fixture
def small_pieces(monkeypatch):
    """Chunks and slices of a few hundred ratings, so that the sample's 22,303 make many of each."""
    monkeypatch.setattr(block_plan, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(block_plan, "SLICE_RATINGS", 1000)


def sample_rows():
    """(user, movie, rating, timestamp) text fields of the bundled sample, header left out."""
    return [line.split(",") for line in SAMPLE_RATINGS.read_text().splitlines()[1:]]


def expected_plan(fraction, movie_blocks=5, reduce_tasks=8):
    """job.block_plan of the sample's ratings as the scipy reference reads them (integer ids)."""
    ratings = reference.sample_users(reference.read_ratings([SAMPLE_RATINGS]), fraction)
    return plan_of_ratings(ratings.users.astype(np.int64), ratings.movies.astype(np.int64),
                           movie_blocks, reduce_tasks)


def as_json(plan):
    return json.loads(json.dumps(plan))


def write_in_format(path, rows, separator, header=False, line_end="\n"):
    lines = (["userId,movieId,rating,timestamp"] if header else []) + [separator.join(row) for row in rows]
    path.write_bytes("".join(line + line_end for line in lines).encode())
    return path


@pytest.mark.parametrize("name, separator, header, line_end", [
    ("u.data", "\t", False, "\n"), ("ratings.dat", "::", False, "\n"), ("ratings.csv", ",", True, "\r\n")])
def test_the_plan_of_every_movielens_format_is_the_plan_of_its_ratings(
        tmp_path, small_pieces, name, separator, header, line_end):
    path = write_in_format(tmp_path / name, sample_rows(), separator, header, line_end)
    keys = read_rating_keys([path])
    assert keys.size == 22_303
    assert as_json(plan_from_keys(keys, 5, 8)) == as_json(expected_plan(1.0))


def test_bad_lines_padded_ids_and_repeated_ratings_are_read_as_the_job_reads_them(tmp_path, small_pieces):
    rows = sample_rows()
    messy = [*rows[:5000], ["1", "x", "4", "9"], [], ["2", "3", "7", "1"], *rows[5000:]]
    messy += [[f"00{user}", f"0{movie}", rating, "0"] for user, movie, rating, _ in rows[:300]]  # rated again
    path = write_in_format(tmp_path / "ratings.csv", messy, ",", header=True)
    assert as_json(plan_from_keys(read_rating_keys([path]), 5, 8)) == as_json(expected_plan(1.0))


@pytest.mark.parametrize("fraction", [0.3, 0.05])
def test_the_plan_is_measured_on_the_users_of_the_runs_sample(small_pieces, fraction):
    keys = read_rating_keys([SAMPLE_RATINGS], fraction)
    users = np.unique(keys >> 32).tolist()
    assert 0 < len(users) < 150
    assert all(job_kernel().in_sample(str(user), fraction) for user in users)
    assert as_json(plan_from_keys(keys, 5, 8)) == as_json(expected_plan(fraction))


@pytest.mark.parametrize("line", [
    b"1,2,3.5,4", b"1::2::4.0::4", b"1\t2\t5\t4", b"0007,02,0.5,1", b"1,2,3.5,4\r", b"1,2, 3.5 ,4",
    b"\xef\xbb\xbf1,2,3,4", b"1,2,5.5,4", b"1,2,0,4", b"1,2,3.25,4", b"1,2,nan,4", b"1,2,3", b"1;2;3;4",
    b"userId,movieId,rating,timestamp", b"", b"1,2,3,4x", b"9999999999,2,3,4"])
def test_each_line_gives_the_ids_the_job_reads_from_it(line):
    kernel = job_kernel()
    try:
        parsed = kernel.parse_rating_line(line)
    except kernel.BadRatingLine:
        parsed = None
    expected = ([int(parsed[0])], [int(parsed[1])]) if parsed else ([], [])
    if parsed and len(parsed[0]) > block_plan.ID_DIGITS:
        with pytest.raises(BlockPlanUnavailable, match="more than 9 digits"):
            parse_ratings(line + b"\n")
        return
    users, movies = parse_ratings(line + b"\n")
    assert (users.tolist(), movies.tolist()) == expected


def test_chunks_end_at_line_ends_and_slices_hold_whole_users(tmp_path, small_pieces):
    chunks = list(line_chunks(SAMPLE_RATINGS))
    assert len(chunks) > 100 and b"".join(chunks) == SAMPLE_RATINGS.read_bytes()
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    keys = read_rating_keys([SAMPLE_RATINGS])
    slices = list(user_slices(keys))
    assert len(slices) > 10 and np.array_equal(np.concatenate(slices), keys)
    firsts, lasts = [int(part[0]) >> 32 for part in slices[1:]], [int(part[-1]) >> 32 for part in slices[:-1]]
    assert all(first != last for first, last in zip(firsts, lasts, strict=True))


@pytest.mark.parametrize("conf, layout", [
    ({"target": "emr", "dataset": "ml-latest-small", "node_count": 3}, (5, 8)),  # 2 core nodes x 4 vCPUs
    ({"target": "emr", "dataset": "ml-1m", "node_count": 9}, (movie_blocks_for(32, 3_706), 32)),
    ({"target": "emr", "dataset": "ml-25m", "node_count": 5, "instance_type": "m5.2xlarge"}, (23, 32)),
    ({"target": "local", "dataset": "ml-100k", "node_count": 2}, (4, 2)),
    ({"target": "local", "dataset": "ml-25m", "node_count": 4}, (23, 4)),
])
def test_the_plan_has_the_blocks_and_reduce_tasks_the_run_uses(conf, layout):
    assert stage2_layout(validate_run_config(conf, max_node_count=20)) == layout


def test_stage_block_plan_writes_the_plan_the_job_loads(tmp_path, caplog):
    config = validate_run_config({"target": "local", "dataset": "ml-latest-small", "node_count": 3,
                                  "sample_fraction": 0.5}, max_node_count=20)
    storage = LocalStorage(tmp_path)
    with caplog.at_level(logging.INFO):
        summary = stage_block_plan(storage, "runs/r1", config, [SAMPLE_RATINGS])
    plan, ratings = run_block_plan([SAMPLE_RATINGS], config)
    assert summary["uri"] == str(tmp_path / "runs/r1/job" / BLOCK_PLAN_FILE)
    assert (summary["movie_blocks"], summary["reduce_tasks"], summary["ratings"]) == (4, 3, ratings)
    assert job_kernel().load_block_plan(summary["uri"], 4) == as_json(plan)
    loads = np.zeros(3)
    for pair, task in plan["routes"].items():
        loads[task] += plan["pair_work"][pair]
    assert summary["planned_skew"] == round(loads.max() / loads.mean(), 3)
    assert "planned work skew" in caplog.text


def test_a_plan_that_cannot_be_made_leaves_the_run_without_one_and_says_why(tmp_path, caplog):
    config = validate_run_config({"target": "local"}, max_node_count=20)
    storage = LocalStorage(tmp_path)
    storage.put_bytes(b"{}", f"runs/r1/job/{BLOCK_PLAN_FILE}")  # an earlier try's
    long_ids = write_in_format(tmp_path / "ratings.csv", [["12345678901", "1", "4", "1"]], ",")
    summary = stage_block_plan(storage, "runs/r1", config, [long_ids])
    assert summary == {"uri": None, "skipped": "BlockPlanUnavailable: id 12345678901 has more than 9 digits: "
                                               "the plan's keys hold ids below 10**9"}
    assert not storage.exists(f"runs/r1/job/{BLOCK_PLAN_FILE}")
    assert "stage 2 deals its block pairs onto its reduce tasks in turn" in caplog.text
    missing = stage_block_plan(storage, "runs/r1", config, [tmp_path / "absent.csv"])
    assert missing["uri"] is None and missing["skipped"].startswith("FileNotFoundError: ")


# The plan's math.
@pytest.mark.parametrize("slots, movies, blocks", [(1, 0, 4), (8, 3_706, 5), (12, 0, 6), (64, 0, 15),
                                                   (16, 59_047, 22)])
def test_movie_blocks_bound_block_size_and_deal_evenly(slots, movies, blocks):
    assert movie_blocks_for(slots, movies) == blocks
    assert math.ceil(movies / blocks) <= MAX_BLOCK_MOVIES
    assert dealt_skew(blocks * (blocks + 1) // 2, slots) <= TARGET_DEALT_SKEW


def test_mass_blocks_have_equal_movie_counts_and_close_mass():
    rng = np.random.default_rng(3)
    popularity = rng.gamma(0.6, size=997) ** 1.4  # heavy-tailed, as synthetic.py draws it
    movie_ids = rng.choice(997, size=50_000, p=popularity / popularity.sum()).astype(str)
    block_of = mass_blocks(movie_ids, 4)
    sizes = np.bincount(list(block_of.values()))
    movies, counts = np.unique(movie_ids, return_counts=True)
    mass = np.bincount([block_of[movie] for movie in movies.tolist()], weights=counts)
    assert sizes.max() - sizes.min() <= 1
    assert mass.max() / mass.mean() < 1.25


def test_block_pair_work_is_the_sum_over_users_of_n_a_times_n_b():
    users = np.array(["1", "1", "1", "2", "2"])
    movies = np.array(["10", "11", "12", "10", "12"])
    block_of = {"10": 0, "11": 1, "12": 1}
    # user 1: n_0 = 1, n_1 = 2; user 2: n_0 = 1, n_1 = 1; one movie in a block reaches no diagonal.
    assert block_pair_work(users, movies, block_of, 2) == {"0,0": 0, "0,1": 3, "1,1": 4}


def test_balanced_routes_put_the_heaviest_pairs_apart():
    work = {"0,0": 10, "0,1": 9, "1,1": 2, "0,2": 2}
    routes = balanced_routes(work, 2)
    assert routes["0,0"] != routes["0,1"] and routes["1,1"] != routes["0,2"]
    assert routed_skew(work, routes, 2) == pytest.approx(12 / 11.5)


def test_plan_is_written_as_the_job_reads_it(tmp_path):
    users = np.repeat(np.arange(50).astype(str), 20)
    movies = np.array([str(movie) for movie in np.random.default_rng(1).integers(0, 300, 1000)])
    plan = write_block_plan(tmp_path / "plan.json", users, movies, 3, 4)
    assert json.loads((tmp_path / "plan.json").read_text()) == plan == plan_of_ratings(users, movies, 3, 4)
    assert set(plan["routes"]) == {"0,0", "0,1", "0,2", "1,1", "1,2", "2,2"}
    assert set(plan["routes"].values()) <= set(range(4))


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_the_pair_work_counted_on_the_files_is_the_jobs_own_count(fraction):
    from movielens_emr.engine.similarity.job import PAIR_WORK_COUNTER, job_class
    from movielens_emr.reporting.metrics import flatten_counters

    movies = SAMPLE_RATINGS.with_name("movies.csv")
    job = job_class()(["-r", "inline", "--no-conf", "--items", str(movies), "--sample-fraction",
                       repr(fraction), str(SAMPLE_RATINGS)])
    with job.make_runner() as runner:
        runner.run()
        counted = flatten_counters(runner.counters())[PAIR_WORK_COUNTER]
    assert block_plan.pair_work_of_files([SAMPLE_RATINGS], fraction) == counted
    if fraction < 1:  # a sample's work is not the whole's times the fraction
        whole = block_plan.pair_work_of_files([SAMPLE_RATINGS])
        assert counted != round(whole * fraction)
