"""The ALS block-count and Kryo benchmark's own parts: its options, what each block count stands for, the
factors it ships, its table; and one tiny run end to end."""
import json
import subprocess
import sys

import pytest

from benchmarks import als_strategies as bench


@pytest.mark.parametrize(("text", "expected"), [
    ("1", [(1, 1)]), ("1,2,8x1", [(1, 1), (2, 2), (8, 1)]), (" 4X2 , 16", [(4, 2), (16, 16)])])
def test_block_counts_are_n_for_n_x_n_or_u_x_i(text, expected):
    assert bench.parse_layouts(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("0", "'0' is not a block count"), ("2x", "'2x' is not"), ("ax3", "'ax3' is not"), ("2x2x2", "is not"),
    ("4,4x4", "repeated")])
def test_bad_block_counts_are_refused_by_name(text, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--blocks", text])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("serializers", ["kryo,avro", "kryo,kryo", ""])
def test_unknown_or_repeated_serializers_are_refused(serializers, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--serializers", serializers])
    assert "--serializers: each of kryo, java at most once" in capsys.readouterr().err


def test_the_defaults_are_the_engines_hyperparameters_on_ml_1m_shaped_data_with_fewer_iterations():
    args = bench.parse_args([])
    assert (args.rank, args.reg_param, args.alpha, args.max_iter) == (10, 0.1, 1.0, 5)
    assert (args.shape.users, args.shape.movies, args.shape.ratings) == (6040, 3706, 1_000_209)
    assert args.serializer_names == ["kryo", "java"] and (8, 1) in args.layouts


@pytest.mark.parametrize(("layout", "label"), [
    ((1, 1), "one block: no distribution"), ((8, 1), "one item block (nearest to full broadcast)"),
    ((1, 4), "one user block"), ((4, 4), "blocked: half gridify"), ((16, 2), "blocked: half gridify")])
def test_each_block_count_says_which_strategy_it_stands_for(layout, label):
    assert bench.strategy(*layout) == label


def test_shipped_factors_are_the_movies_rated_in_each_user_block():
    # users 1 and 3 fall in block 1 of 2, users 2 and 4 in block 0: block 1 rated movies 10 and 30, block 0
    # movies 10 and 20; 3 movies in all
    users, movies = [1, 1, 3, 2, 4, 4], [10, 30, 30, 10, 10, 20]
    assert bench.shipped_factors(users, movies, 2) == (4, 6)
    assert bench.shipped_factors(users, movies, 1) == (3, 3)


def fits(*seconds):
    return [{"seconds": value * 10, "seconds_per_iteration": value, "load_before": 0.5} for value in seconds]


def result_of(serializers=("kryo", "java")):
    figures = {"kryo": ([1.0, 1.2, 5.0], 100.0), "java": ([2.0, 2.4, 2.2], 100.5)}
    row = {"user_blocks": 4, "item_blocks": 1, "strategy": bench.strategy(4, 1), "shipped": 30,
           "broadcast": 40}
    for name in serializers:
        seconds, loss = figures[name]
        row[name] = {"median_seconds_per_iteration": sorted(seconds)[1], "training_loss": loss,
                     "fits": fits(*seconds)}
    setup = {"ratings": 1000, "users": 50, "movies": 10, "data_seed": 1, "rank": 10, "max_iter": 10,
             "reg_param": 0.1, "alpha": 1.0, "spark_version": "3.5.5", "cores": 2, "java": 17, "repeats": 3,
             "cpu": "a CPU", "cpu_count": 2, "platform": "Linux", "date": "2026-12-05T03:00:00+00:00"}
    return {"setup": setup, "serializers": list(serializers), "rows": [row]}


def test_the_table_puts_both_serializers_side_by_side_with_their_ratio_and_losses():
    table = bench.markdown_table(result_of()["rows"], ["kryo", "java"]).splitlines()
    assert table[0] == ("| blocks (users x movies) | stands for | s/iteration, Kryo | s/iteration, Java "
                        "| Kryo / Java | training loss, Kryo | training loss, Java | movie factors shipped |")
    assert table[2] == ("| 4 x 1 | one item block (nearest to full broadcast) | 1.200 | 2.200 | 0.55 "
                        "| 100.0 | 100.5 | 30 (75% of a broadcast) |")


def test_with_one_serializer_there_is_no_ratio():
    table = bench.markdown_table(result_of(("java",))["rows"], ["java"]).splitlines()
    assert "Kryo / Java" not in table[0] and table[2].startswith("| 4 x 1 | one item block")


def test_the_report_names_the_setup_the_loss_spread_the_gridify_gap_and_every_fits_load():
    text = bench.report(result_of())
    assert "ALS on 1,000 ml-1m-shaped ratings (50 users, 10 movies" in text
    assert "median of 3 fits each" in text and "machine: a CPU, 2 CPUs" in text
    assert "training losses differ by at most 5.00e-03 (relative)" in text
    assert "not measurable with Spark's ALS: full gridify" in text
    assert "  4 x 1 kryo: fits 10.0, 12.0, 50.0 s; loads 0.50, 0.50, 0.50" in text


def test_a_tiny_run_times_every_block_count_with_both_serializers_and_the_same_loss(tmp_path):
    """Two Spark sessions (Kryo, then Java) on a few thousand synthetic ratings, one fit of each: the
    pipeline of the benchmark end to end, in a process of its own (its sessions are its own)."""
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/als_strategies.py", "--users", "60", "--movies", "40",
         "--ratings", "2000", "--blocks", "1,2x1", "--repeats", "1", "--max-iter", "2", "--rank", "3",
         "--json", str(out)],
        cwd=bench.REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["setup"]["ratings"] == 2000 and result["serializers"] == ["kryo", "java"]
    rows = result["rows"]
    assert [(row["user_blocks"], row["item_blocks"]) for row in rows] == [(1, 1), (2, 1)]
    for row in rows:
        assert row["kryo"]["median_seconds_per_iteration"] > 0 and len(row["java"]["fits"]) == 1
        # the serializer changes how blocks are shipped, not what is computed
        assert row["kryo"]["training_loss"] == pytest.approx(row["java"]["training_loss"], rel=1e-9)
    assert "| 2 x 1 | one item block (nearest to full broadcast) |" in done.stdout
