"""The benchmark's measuring parts: answers compared, shuffle and task records read, the memory bound."""
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from benchmarks import job_speed


def test_bound_formula_is_evaluated_with_carets_as_powers():
    assert job_speed.evaluate_bound("12.5*(S+2)*B^2 + 64*C*m", {"S": 4, "B": 10, "C": 2, "m": 3}) == 7884


@pytest.mark.parametrize("formula", ["__import__('os')", "O(C*m)", "B.bit_length()", "'a'*B"])
def test_bound_formula_refuses_anything_but_arithmetic_of_the_sizes(formula):
    with pytest.raises((ValueError, SyntaxError)):
        job_speed.evaluate_bound(formula, {"B": 10, "C": 2, "m": 3})


def test_the_jobs_docstring_states_a_stage2_bound_the_benchmark_can_evaluate():
    shape = {"distinct_movies": 3706, "max_movies_per_user": 2314, "largest_block": 960}
    assert job_speed.stage2_bound(shape, job_speed.stage2_bound_formula()) > 0


def test_shape_counts_the_largest_block_as_the_job_hashes_movies():
    ratings = job_speed.reference.Ratings(
        users=np.array(["1", "1", "2"]), movies=np.array(["10", "11", "10"]),
        ratings=np.array([4.0, 5.0, 3.0]), timestamps=np.array([1, 2, 3]))
    blocks = [zlib.crc32(movie) % 4 for movie in (b"10", b"11")]
    assert job_speed.input_shape(ratings) == {
        "ratings": 3, "users": 2, "distinct_movies": 2, "max_movies_per_user": 2,
        "largest_block": 2 if blocks[0] == blocks[1] else 1}


def test_read_pairs_of_both_output_formats(tmp_path):
    baseline = tmp_path / "baseline.txt"
    baseline.write_text('"1"\t["2", 0.96, 11]\n"2"\t["1", 0.96, 11]\n')
    ours = tmp_path / "ours.txt"
    ours.write_text('["1", "A (1995)"]\t["2", "B (1996)", 0.96, 11]\n'
                    '["2", "B (1996)"]\t["1", null, 0.96, 11]\n')
    assert job_speed.read_baseline_pairs(baseline) == job_speed.read_job_pairs(ours) == {
        ("1", "2"): (0.96, 11), ("2", "1"): (0.96, 11)}


def test_compare_pairs_counts_missing_pairs_score_differences_and_count_mismatches():
    yardstick = {("1", "2"): (0.96, 11), ("2", "1"): (0.96, 11), ("1", "3"): (0.97, 12)}
    job = {("1", "2"): (0.9601, 11), ("2", "1"): (0.96, 12), ("3", "1"): (0.97, 12)}
    agreement = job_speed.compare_pairs(yardstick, job)
    assert agreement["same_set"] is False
    counts = (agreement["only_yardstick"], agreement["only_job"], agreement["co_raters_mismatches"])
    assert counts == (1, 1, 1)
    assert agreement["max_score_diff"] == pytest.approx(1e-4)


def write_task_files(step_dir, phase, contents):
    for task_num, text in enumerate(contents):
        task_dir = step_dir / phase / f"{task_num:05d}"
        task_dir.mkdir(parents=True)
        (task_dir / "output").write_bytes(text)


def test_shuffle_counts_what_is_sorted_for_reducers_the_combiner_output_when_there_is_one(tmp_path):
    write_task_files(tmp_path / "step" / "000", "mapper", [b"a\t1\n", b"b\t2\nc\t3\n"])
    (tmp_path / "step" / "000" / "reducer").mkdir()
    write_task_files(tmp_path / "step" / "001", "mapper", [b"x\t1\nx\t1\nx\t1\n"])
    write_task_files(tmp_path / "step" / "001", "combiner", [b"x\t3\n"])
    (tmp_path / "step" / "001" / "reducer").mkdir()
    write_task_files(tmp_path / "step" / "002", "mapper", [b"map-only\n"])
    assert job_speed.shuffle_by_stage(tmp_path) == [
        {"stage": 1, "sorted_side": "mapper", "bytes": 12, "records": 3},
        {"stage": 2, "sorted_side": "combiner", "bytes": 4, "records": 1},
    ]


def test_task_records_are_grouped_by_stage_and_phase(tmp_path):
    (tmp_path / "task-a").write_text("51200 1.50 python job.py --step-num=1 --reducer --items movies.dat\n")
    (tmp_path / "task-b").write_text(
        "Command exited with non-zero status 1\n30720 0.25 python job.py --step-num=0 --mapper\n")
    tasks = job_speed.read_task_records(tmp_path)
    assert [(stage, phase, rss) for stage, phase, rss, _, _ in tasks] == [
        (2, "reducer", 51200 * 1024), (1, "mapper", 30720 * 1024)]
    assert job_speed.memory_by_stage(tasks)[1]["max_task_s"] == 1.5


@pytest.mark.skipif(shutil.which("/usr/bin/time") is None, reason="GNU time is not installed")
def test_task_wrapper_runs_python_with_its_arguments_and_records_it(tmp_path):
    wrapper, records = job_speed.write_task_wrapper(tmp_path)
    result = subprocess.run([str(wrapper), "-c", "import sys; print(sys.argv[1])", "--step-num=2"],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "--step-num=2\n"
    [record] = records.iterdir()
    assert int(record.read_text().split()[0]) > 1000  # peak RSS in KB of a real interpreter


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(job_speed.__file__), "--help"],
                            capture_output=True, text=True, check=True)
    for option in ("--skip-baseline", "--with-baseline-1m", "--repeat", "--json", "--shared"):
        assert option in result.stdout
