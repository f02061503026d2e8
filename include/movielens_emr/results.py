"""The job's output lines as rows, and the result files written from them."""
import csv
import io
import json
from dataclasses import astuple, dataclass

CSV_COLUMNS = ("movie_id", "movie_title", "similar_movie_id", "similar_movie_title", "score", "co_raters")
TOP_NEIGHBOURS = 10


class MalformedOutput(ValueError):
    """An output line that does not follow the job's output contract."""


@dataclass(frozen=True)
class SimilarityRow:
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


def sorted_rows(rows):
    """By movie, then score descending, then similar movie."""
    return sorted(rows, key=lambda row: (id_order(row.movie_id), -row.score, id_order(row.similar_movie_id)))


def similarities_csv(rows):
    """The CSV text of sorted rows, with a header; a missing title is an empty field."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(astuple(row) for row in rows)
    return text.getvalue()


def top_neighbours(rows, limit=TOP_NEIGHBOURS):
    """{movie_id: {"title", "neighbours": [...]}} with each movie's best `limit` neighbours, from sorted rows."""
    movies = {}
    for row in rows:
        movie = movies.setdefault(row.movie_id, {"title": row.movie_title, "neighbours": []})
        if len(movie["neighbours"]) < limit:
            movie["neighbours"].append({
                "movie_id": row.similar_movie_id, "title": row.similar_movie_title,
                "score": row.score, "co_raters": row.co_raters})
    return movies
