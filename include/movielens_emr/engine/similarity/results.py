"""The job's output lines as rows, their output order, and the result files written from them."""
import csv
import io
import json
from typing import NamedTuple

CSV_COLUMNS = ("movie_id", "movie_title", "similar_movie_id", "similar_movie_title", "score", "co_raters")
TOP_NEIGHBOURS = 10


class MalformedOutput(ValueError):
    """An output line that does not follow the job's output contract."""


class SimilarityRow(NamedTuple):
    """One ordered pair, its fields in CSV_COLUMNS order (a tuple: small in memory, a CSV row as it is)."""

    movie_id: str
    movie_title: str | None
    similar_movie_id: str
    similar_movie_title: str | None
    score: float
    co_raters: int


def parse_output_line(line):
    """One job output line: JSON [movie_id, title] TAB JSON [similar_id, similar_title, score, co_raters]."""
    try:
        key, value = (json.loads(part) for part in line.rstrip("\n").split("\t"))
        (movie_id, title), (similar_id, similar_title, score, co_raters) = key, value
    except ValueError as error:
        raise MalformedOutput(f"not a similarity line ({error}): {line[:200]!r}") from None
    if not (isinstance(score, float | int) and isinstance(co_raters, int)):
        raise MalformedOutput(f"score or co_raters of the wrong type: {line[:200]!r}")
    return SimilarityRow(str(movie_id), title, str(similar_id), similar_title, float(score), co_raters)


def id_order(movie_id):
    """Numeric ids in numeric order, any others after them in text order."""
    return (0, int(movie_id), "") if movie_id.isdigit() else (1, 0, movie_id)


def output_order(row):
    """The sort key of the result files: by movie, then score descending, then similar movie."""
    return id_order(row.movie_id), -row.score, id_order(row.similar_movie_id)


def sorted_rows(rows):
    """Rows in output order, all in memory (collect.py sorts any number of them in bounded memory)."""
    return sorted(rows, key=output_order)


def similarities_csv(rows):
    """The CSV text of sorted rows, with a header; a missing title is an empty field."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return text.getvalue()


def top_neighbours(rows, limit=TOP_NEIGHBOURS):
    """{movie_id: {"title", "neighbours": [...]}}: each movie's best `limit` neighbours, from sorted rows."""
    movies = {}
    for row in rows:
        movie = movies.setdefault(row.movie_id, {"title": row.movie_title, "neighbours": []})
        if len(movie["neighbours"]) < limit:
            movie["neighbours"].append(neighbour(row))
    return movies


def neighbour(row):
    return {"movie_id": row.similar_movie_id, "title": row.similar_movie_title,
            "score": row.score, "co_raters": row.co_raters}


def neighbour_groups(rows, limit=TOP_NEIGHBOURS):
    """top_neighbours(rows, limit).items() of rows in output order, one movie at a time.

    Only the rows of one id_order value are pending at once (a movie, or ids such as "7" and "07" that
    share a place in the order), so memory does not grow with the number of rows or movies.
    """
    pending, pending_order = {}, None
    for row in rows:
        order = id_order(row.movie_id)
        if order != pending_order:
            yield from pending.items()
            pending, pending_order = {}, order
        movie = pending.setdefault(row.movie_id, {"title": row.movie_title, "neighbours": []})
        if len(movie["neighbours"]) < limit:
            movie["neighbours"].append(neighbour(row))
    yield from pending.items()


def write_top_neighbours_json(groups, out):
    """(movie_id, movie) groups to the text file `out`, as json.dumps(dict(groups), ensure_ascii=False,
    indent=1) would write them, one movie at a time; the number of movies."""
    movies = 0
    for movie_id, movie in groups:
        entry = json.dumps({movie_id: movie}, ensure_ascii=False, indent=1)[2:-2]  # without its "{\n" "\n}"
        out.write(("{\n" if movies == 0 else ",\n") + entry)
        movies += 1
    out.write("\n}" if movies else "{}")
    return movies
