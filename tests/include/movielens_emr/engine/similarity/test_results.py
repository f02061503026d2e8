"""The job's output lines turned into the result files."""
import csv
import io
import json

import pytest

from movielens_emr.engine.similarity.results import (
    MalformedOutput,
    neighbour_groups,
    parse_output_line,
    similarities_csv,
    sorted_rows,
    top_neighbours,
    write_top_neighbours_json,
)

LINES = [
    '["10", "Ten (1990)"]\t["2", "Two, The (1992)", 0.96, 12]',
    '["2", "Two, The (1992)"]\t["10", "Ten (1990)", 0.96, 12]',
    '["2", "Two, The (1992)"]\t["7", null, 0.99, 30]',
    '["7", null]\t["2", "Two, The (1992)", 0.99, 30]',
]


def test_parse_output_line_reads_the_output_contract():
    row = parse_output_line(LINES[2])
    assert (row.movie_id, row.movie_title, row.similar_movie_id, row.similar_movie_title,
            row.score, row.co_raters) == ("2", "Two, The (1992)", "7", None, 0.99, 30)


@pytest.mark.parametrize("line", ["not json", '["1", "A"]', '["1", "A"]\t["2", "B", "high", 3]',
                                  '["1", "A"]\t["2", "B", 0.9, 3.5]'])
def test_malformed_lines_are_refused(line):
    with pytest.raises(MalformedOutput):
        parse_output_line(line)


def test_rows_sort_by_movie_numerically_then_score_descending():
    rows = sorted_rows(parse_output_line(line) for line in LINES)
    assert [(row.movie_id, row.similar_movie_id) for row in rows] == [("2", "7"), ("2", "10"), ("7", "2"),
                                                                      ("10", "2")]


def test_similarities_csv_has_the_contract_columns_and_quotes_commas():
    text = similarities_csv(sorted_rows(parse_output_line(line) for line in LINES))
    records = list(csv.reader(io.StringIO(text)))
    assert records[0] == ["movie_id", "movie_title", "similar_movie_id", "similar_movie_title", "score",
                          "co_raters"]
    assert records[1] == ["2", "Two, The (1992)", "7", "", "0.99", "30"]
    assert len(records) == 5


def test_top_neighbours_keeps_the_best_per_movie():
    rows = sorted_rows(parse_output_line(line) for line in LINES)
    best = top_neighbours(rows, limit=1)
    assert best["2"] == {"title": "Two, The (1992)",
                         "neighbours": [{"movie_id": "7", "title": None, "score": 0.99, "co_raters": 30}]}
    assert set(best) == {"2", "7", "10"}
    json.dumps(best)


@pytest.mark.parametrize("limit", [1, 10])
def test_neighbour_groups_are_top_neighbours_one_movie_at_a_time(limit):
    lines = [*LINES, '["07", "Seven again"]\t["2", "Two, The (1992)", 0.5, 3]',
             '["7", null]\t["10", "Ten (1990)", 0.1, 3]']
    rows = sorted_rows(parse_output_line(line) for line in lines)
    assert [row.movie_id for row in rows] == ["2", "2", "7", "07", "7", "10"]  # "7" and "07" share a place
    groups = list(neighbour_groups(iter(rows), limit))
    assert [movie_id for movie_id, _ in groups] == ["2", "7", "07", "10"]
    assert dict(groups) == top_neighbours(rows, limit)


@pytest.mark.parametrize("lines", [LINES, LINES[:1], [], [
    '["1", "Caf\\u00e9 \\"Noir\\"\\n, Le"]\t["2", "\\u2028\\ud83c\\udfac", -0.0, 1]']])
def test_top_neighbours_json_is_written_as_json_dumps_writes_it(lines):
    rows = sorted_rows(parse_output_line(line) for line in lines)
    text = io.StringIO()
    movies = write_top_neighbours_json(neighbour_groups(rows), text)
    assert text.getvalue() == json.dumps(top_neighbours(rows), ensure_ascii=False, indent=1)
    assert movies == len(top_neighbours(rows))
