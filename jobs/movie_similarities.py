"""Similar movies from MovieLens ratings in three MapReduce stages, exact, on Hadoop streaming.

Usage: python jobs/movie_similarities.py [-r inline|local|hadoop|emr] --items MOVIES RATINGS...

1. group ratings by user (and count the pair work W = sum over users of n_u^2);
2. split each user's ratings into movie blocks and compute, per pair of blocks, the pair
   statistics of every movie pair co-rated by enough users and its similarity (dense
   matrix products over chunks of users, so each unordered pair is computed exactly once
   and nothing per pair is shuffled); each block pair's key is salted so that Hadoop's
   HashPartitioner sends it to the reduce task its route names (dealt in turn, or from a
   --block-plan measured on the data), and each reduce task counts its work; both
   directions of every kept pair are written, each movie's neighbours of a block pair as one
   record;
3. attach titles and rank each movie's neighbours (no mapper of its own).

The input format is detected from each line (ml-100k tab, ml-1m/ml-10m '::', ml-latest /
ml-20m / ml-25m CSV with header); several ratings files may be given. Output: one line
per kept ordered pair, JSON protocol, key [movie_id, movie_title], value
[similar_movie_id, similar_movie_title, score, co_raters]; a missing title is null.

Peak memory of one task, with m = the most movies one user rated, M = distinct movies,
G = --movie-blocks, C = --user-chunk, S = sums per pair (cosine 4, pearson 6, jaccard 1)
and B = the movies of the larger block of a block pair (movies are hashed into blocks,
so B is M/G within a few per cent once M is in the thousands; a --block-plan makes blocks
equal to one movie), beyond the interpreter:
  stage 1 mapper:  O(1)    at most 100,000 buffered ratings
  stage 1 reducer: O(m)    one user's ratings
  stage 2 mapper:  O(m)    one user's ratings and their block split, the plan's O(M) blocks
  stage 2 reducer: 12.5*(S+2)*B^2 + 20*C*B + 8*(S+5)*256*B + 64*C*r + 100*(256*B + 200000)
                   bytes: the block pair's sums (25% growth headroom, one more while
                   growing, one gathered for an update), a chunk's dense matrices, one
                   256-row slice of pairs being scored, one chunk of users' ratings,
                   r = min(m, 2*B) of them a user (a row holds only the movies of the pair's
                   two blocks), and the kept neighbours waiting to be written (at most
                   HELD_NEIGHBOURS plus one slice's, about 100 bytes each)
  stage 3 reducer: O(M)    titles, one movie's neighbours
e.g. ml-1m (M=3,706, m=2,314), G=4 (B about 960), C=1024, cosine: at most 277 MB;
ml-25m (M=59,047, m=32,202), G=22 (B about 2,700), cosine: at most 1.1 GB.
The pipeline keeps B <= 2,800 (movielens_emr.engine.similarity.job.MAX_BLOCK_MOVIES): ml-25m
(M=59,047) gets G >= 22 blocks, and a stage 2 reducer stays under 1.4 GB even for pearson at B = 2,800.
"""
import bz2
import csv
import gzip
import json
import logging
import math
import os
import re
import sys
import zlib
from collections import Counter

# One BLAS thread per task: parallelism comes from tasks running side by side, as the
# scheduler places them; threads inside each task would only compete for the same cores.
for _blas_threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_threads, "1")
# mrjob imports distutils; setuptools' replacement of it costs every task process 0.25 s
# of start-up, the stdlib's (still in Python <= 3.11, which mrjob needs) almost nothing.
os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")

from mrjob.compat import jobconf_from_env  # noqa: E402
from mrjob.job import MRJob  # noqa: E402
from mrjob.protocol import BytesValueProtocol, JSONProtocol, RawProtocol  # noqa: E402
from mrjob.step import MRStep, StepFailedException  # noqa: E402

log = logging.getLogger(__name__)
# numpy is imported inside the functions that use it: only stage 2's reducer needs it, and
# each of the other tasks (a new process each) starts 0.1 s sooner without it.

METRICS = ("cosine", "pearson", "jaccard")
# Per-pair sums each metric needs; x, y are the two movies' ratings over their co-raters.
METRIC_STATS = {
    "cosine": ("n", "sxy", "sxx", "syy"),
    "pearson": ("n", "sx", "sy", "sxy", "sxx", "syy"),
    "jaccard": ("n",),
}
# Ratings travel doubled (half stars become integers 1..10) as one letter each: 'a' is 1.
RATING_LETTER_BASE = ord("a") - 1
HEADER_FIRST_FIELDS = (b"userid", b"user_id", b"user")
# Some editors start a UTF-8 file with a byte-order mark; it is not part of the first line's text.
UTF8_BOM = b"\xef\xbb\xbf"
# A rating as MovieLens writes it: '4', '3.5'. float() would also take '0_5' (as 5), '5e0', 'nan', 'inf'.
PLAIN_DECIMAL = re.compile(rb"-?[0-9]+(\.[0-9]+)?")
# Magic numbers of the compressed movies files read as they are: gzip, bzip2.
COMPRESSED_OPENERS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open))
# Stage 1 key of the map tasks' bad-line reports; user ids are digits, so it never collides.
INPUT_QUALITY_KEY = "#input-quality"
# Rows of a block pair's sums scored at once in stage 2.
SCORING_ROWS = 256
# Stage 2 writes each movie's kept neighbours of a block pair as one record, 'movie score co_raters'
# entries joined by NEIGHBOUR_SEPARATOR: one shuffled line per movie and block pair, not per pair,
# spares mrjob's per-line costs (write, sort, split, read) on every kept pair. The entries for the
# second movie of each pair wait in memory until there are at most HELD_NEIGHBOURS of them.
NEIGHBOUR_SEPARATOR = ";"
HELD_NEIGHBOURS = 200_000
# Ratings a stage 1 mapper holds before writing them out grouped by user (about 3 MB).
USER_BUFFER = 100_000
# Stage 2 keys are 'a,b' or 'a,b@salt': the salt steers the key onto its planned reduce task.
ROUTE_SALT = "@"
# Counters of the work W = sum over users of n_u^2 (stage 1) and of each stage 2 reduce task's
# work, sum over its block pairs and users of n_a*n_b (n_a*n_a on a diagonal block pair).
WORK_GROUP = "work"
PAIR_WORK_COUNTER = "pair work sum n_u^2"
TASK_WORK_GROUP = "stage 2 work"
# Hadoop allows 120 counters a job by default: per-task counters only for the first tasks.
MAX_TASK_WORK_COUNTERS = 96


class BadRatingLine(ValueError):
    """A ratings line that cannot be used; the message is the reason, used as a counter name."""


class TooManyBadLines(RuntimeError):
    """A map task saw more bad lines than --max-bad-fraction allows."""


class ItemsFileUnusable(ValueError):
    """The --items file cannot be read: found when the run starts, before any stage."""


# The errors a task of this job raises on purpose: a failed step is reported with the task's own message.
TASK_ERRORS = {error.__name__: error for error in (TooManyBadLines,)}


def canonical_id(digits):
    """An id (a str of ASCII digits) without leading zeros: MovieLens ids are integers, so 0001 is movie 1."""
    return digits.lstrip("0") or "0"


def parse_rating_line(line):
    """Parse one ratings line (bytes) into (user_id, movie_id, doubled_rating, timestamp).

    Returns None for a header or blank line; raises BadRatingLine with the reason otherwise.
    Valid ratings are 0.5 to 5 in half stars, as in every MovieLens release, written as plain
    decimals. A leading byte-order mark and trailing whitespace (a tab, spaces, CR) are ignored;
    ids lose their leading zeros (canonical_id).
    """
    line = line.removeprefix(UTF8_BOM).rstrip()
    if not line:
        return None
    if not line.isascii():
        raise BadRatingLine("undecodable bytes")
    for separator in (b"::", b"\t", b","):
        if separator in line:
            fields = line.split(separator)
            break
    else:
        raise BadRatingLine("no known delimiter")
    if len(fields) != 4:
        raise BadRatingLine("wrong field count")
    user, movie, rating, timestamp = (field.strip() for field in fields)
    if not (user.isdigit() and movie.isdigit()):
        if user.lower() in HEADER_FIRST_FIELDS:
            return None
        raise BadRatingLine("non-numeric id")
    user, movie = canonical_id(user.decode()), canonical_id(movie.decode())
    return user, movie, _doubled_rating(rating), _timestamp(timestamp)


def _doubled_rating(rating):
    if not PLAIN_DECIMAL.fullmatch(rating):
        try:
            float(rating)
        except ValueError:
            raise BadRatingLine("non-numeric rating") from None
        raise BadRatingLine("rating not a plain decimal")
    doubled = float(rating) * 2
    if not (1 <= doubled <= 10 and doubled == int(doubled)):
        raise BadRatingLine("rating out of range")
    return int(doubled)


def _timestamp(timestamp):
    if not timestamp.isdigit():
        raise BadRatingLine("non-numeric timestamp")
    return int(timestamp)


def check_bad_lines(task_reports, max_bad_fraction):
    """Fail when any input file's bad lines exceed max_bad_fraction of its lines.

    task_reports: JSON [file, lines, bad lines, example bad line, its reason], one per map task.
    """
    files = {}
    for report in task_reports:
        input_file, lines, bad, example, reason = json.loads(report)
        totals = files.setdefault(input_file, [0, 0, example, reason])
        totals[0] += lines
        totals[1] += bad
        if bad and not totals[2]:
            totals[2:] = [example, reason]
    for input_file, (lines, bad, example, reason) in sorted(files.items()):
        if bad > max_bad_fraction * lines:
            raise TooManyBadLines(
                f"{bad:,} of {lines:,} ratings lines in {input_file} are bad, above "
                f"--max-bad-fraction {max_bad_fraction}; e.g. {example!r} ({reason})")


def in_sample(user_id, sample_fraction):
    """Whether a user belongs to the deterministic sample: the same users for the same fraction."""
    return sample_fraction >= 1 or zlib.crc32(user_id.encode()) < sample_fraction * 2**32


def latest_ratings(tokens):
    """Keep one rating per movie from 'movie:letter:timestamp' tokens: the latest, the highest on ties.

    Returns ({movie: letter}, number of duplicates dropped).
    """
    best = {}
    duplicates = 0
    for token in tokens:
        movie, letter, timestamp = token.split(":")
        candidate = (int(timestamp), letter)
        if movie in best:
            duplicates += 1
            if candidate <= best[movie]:
                continue
        best[movie] = candidate
    return {movie: letter for movie, (_, letter) in best.items()}, duplicates


def block_pairs_for_user(blocks_present, movie_blocks, needs_marginals):
    """The block pairs (a, b), a <= b, a user's ratings must reach.

    Co-rating statistics only need pairs of blocks the user rated in (and a diagonal
    block only if it holds two of the user's movies); Jaccard also needs every rater of
    a movie in every block pair that movie takes part in.
    """
    if needs_marginals:
        return sorted({(min(a, b), max(a, b)) for a in blocks_present for b in range(movie_blocks)})
    present = sorted(blocks_present)
    return [
        (a, b)
        for i, a in enumerate(present)
        for b in present[i:]
        if a != b or len(blocks_present[a][0]) > 1
    ]


class BadBlockPlan(ValueError):
    """A --block-plan file that does not fit this run's --movie-blocks."""


def load_block_plan(path, movie_blocks):
    """The plan {"movie_blocks", "blocks": {movie: block}, "reduce_tasks", "routes": {"a,b": task}},
    or {} without a path; refuses a plan made for another number of blocks."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as plan_file:
        plan = json.load(plan_file)
    if plan.get("movie_blocks") != movie_blocks:
        raise BadBlockPlan(f"the block plan {path} is for {plan.get('movie_blocks')} movie blocks, "
                           f"this run has --movie-blocks {movie_blocks}")
    return plan


def text_hash(key):
    """Hadoop's Text.hashCode of an ASCII key: h = 31*h + byte from 1, as a signed 32-bit int."""
    h = 1
    for byte in key.encode():
        h = (31 * h + byte) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def hash_partition(key, reduce_tasks):
    """The reduce task Hadoop's default HashPartitioner gives a key: (hash & 0x7fffffff) % tasks."""
    return (text_hash(key) & 0x7FFFFFFF) % reduce_tasks


def routed_key(block_pair, task, reduce_tasks):
    """block_pair, with the first salt that makes the HashPartitioner send it to `task`.

    Exactness never depends on it: every row of a block pair carries the same key, wherever it goes.
    """
    salt = 0
    while hash_partition(f"{block_pair}{ROUTE_SALT}{salt}", reduce_tasks) != task:
        salt += 1
    return f"{block_pair}{ROUTE_SALT}{salt}"


def dealt_routes(movie_blocks, reduce_tasks):
    """Block pairs dealt onto reduce tasks in turn: each task gets floor or ceil(pairs / tasks).

    With no measurement every block pair is taken to weigh the same: blocks hold equal shares of
    movies, and the dense products of a block pair cost the same on and off the diagonal.
    """
    pairs = [f"{a},{b}" for a in range(movie_blocks) for b in range(a, movie_blocks)]
    return {pair: number % reduce_tasks for number, pair in enumerate(pairs)}


class BlockAccumulator:
    """Exact co-rating sums for every movie pair of one block pair (a, b), fed chunks of users.

    Each user row is 'movies_a|letters_a|movies_b|letters_b' ('movies|letters' on the
    diagonal). Sums are over doubled ratings, so they are integers: float32 products of a
    chunk are exact while a chunk's sums stay below 2**24, and float64 accumulators are
    exact up to 2**53.
    """

    def __init__(self, stats, diagonal):
        import numpy as np
        self.stats = stats
        self.diagonal = diagonal
        self.index_a, self.index_b = {}, ({} if not diagonal else None)
        self.sums = {name: np.zeros((0, 0)) for name in stats}
        self.raters_a = np.zeros(0)
        self.raters_b = np.zeros(0)

    @property
    def movies_a(self):
        return list(self.index_a)

    @property
    def movies_b(self):
        return list(self.index_a if self.diagonal else self.index_b)

    def add_users(self, rows):
        """Add one chunk of user rows (at most 65,536 users, to keep float32 sums exact).

        Returns the chunk's work: the sum over its users of n_a * n_b.
        """
        import numpy as np
        left, right = self._chunk_matrices(rows)
        self._grow(len(self.index_a), len(self.index_a if self.diagonal else self.index_b))
        (cols_a, ratings_a, rated_a), (cols_b, ratings_b, rated_b) = left, right
        products = {
            "n": lambda: rated_a.T @ rated_b,
            "sxy": lambda: ratings_a.T @ ratings_b,
            "sxx": lambda: np.square(ratings_a).T @ rated_b,
            "syy": lambda: rated_a.T @ np.square(ratings_b),
            "sx": lambda: ratings_a.T @ rated_b,
            "sy": lambda: rated_a.T @ ratings_b,
        }
        cells = np.ix_(cols_a, cols_b)
        for name in self.stats:
            self.sums[name][cells] += products[name]()
        raters_a, raters_b = rated_a.sum(axis=0), rated_b.sum(axis=0)
        self.raters_a[cols_a] += raters_a
        self.raters_b[cols_b] += raters_b
        return int(rated_a.sum(axis=1, dtype=np.float64) @ rated_b.sum(axis=1, dtype=np.float64))

    def _chunk_matrices(self, rows):
        split_rows = [row.split("|") for row in rows]
        left = self._dense_side([(r[0], r[1]) for r in split_rows], self.index_a)
        if self.diagonal:
            return left, left
        return left, self._dense_side([(r[2], r[3]) for r in split_rows], self.index_b)

    @staticmethod
    def _dense_side(user_ratings, index):
        """Dense (users x movies seen in this chunk) matrices of doubled ratings and of 0/1 rated."""
        import numpy as np
        user_rows, cols, letters = [], [], []
        for user, (movies, user_letters) in enumerate(user_ratings):
            if not movies:
                continue
            movie_cols = [index.setdefault(movie, len(index)) for movie in movies.split(" ")]
            cols.extend(movie_cols)
            user_rows.extend([user] * len(movie_cols))
            letters.append(user_letters)
        ratings = np.frombuffer("".join(letters).encode("ascii"), dtype=np.uint8)
        chunk_cols, dense_cols = np.unique(np.array(cols, dtype=np.int64), return_inverse=True)
        rated = np.zeros((len(user_ratings), len(chunk_cols)), dtype=np.float32)
        doubled = np.zeros_like(rated)
        rated[user_rows, dense_cols] = 1
        doubled[user_rows, dense_cols] = ratings - RATING_LETTER_BASE
        return chunk_cols, doubled, rated

    def _grow(self, rows, cols):
        import numpy as np
        old_rows, old_cols = self.sums[self.stats[0]].shape
        if rows <= old_rows and cols <= old_cols:
            return
        # 25% headroom: few regrowths as a block's movies arrive, and little memory unused.
        rows, cols = max(rows, old_rows * 5 // 4), max(cols, old_cols * 5 // 4)
        for name, sums in self.sums.items():
            self.sums[name] = np.pad(sums, ((0, rows - old_rows), (0, cols - old_cols)))
        self.raters_a = np.pad(self.raters_a, (0, rows - old_rows))
        self.raters_b = np.pad(self.raters_b, (0, cols - old_cols))

    def candidate_pairs(self, min_co_ratings, first_row, end_row):
        """Index arrays (i, j) of the pairs of rows first_row..end_row-1 with more than
        min_co_ratings co-raters, each unordered pair once."""
        import numpy as np
        n = self.sums["n"][first_row:end_row, : len(self.index_a if self.diagonal else self.index_b)]
        keep = n > min_co_ratings
        if self.diagonal:
            keep = np.triu(keep, k=first_row + 1)
        i, j = np.nonzero(keep)
        return i + first_row, j

    def pair_sums(self, i, j):
        """The named sums at the pairs (i, j); on the diagonal, raters of j come from side a."""
        sums = {name: self.sums[name][i, j] for name in self.stats}
        sums["raters_x"] = self.raters_a[i]
        sums["raters_y"] = (self.raters_a if self.diagonal else self.raters_b)[j]
        return sums


def similarity_scores(metric, sums):
    """Vectorised similarity of pairs from their co-rating sums; NaN where it is undefined.

    cosine:  sxy / (sqrt(sxx) * sqrt(syy)), raw ratings over the co-raters;
    pearson: covariance over the co-raters, each movie centred on its mean over them;
    jaccard: co-raters / raters of either movie.
    """
    import numpy as np
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "cosine":
            # sqrt of the exact integer product: a score that is exactly a threshold stays exact.
            return sums["sxy"] / np.sqrt(sums["sxx"] * sums["syy"])
        if metric == "pearson":
            n = sums["n"]
            covariance = n * sums["sxy"] - sums["sx"] * sums["sy"]
            spread = (n * sums["sxx"] - sums["sx"] ** 2) * (n * sums["syy"] - sums["sy"] ** 2)
            return np.where(spread > 0, covariance / np.sqrt(spread), np.nan)
        if metric == "jaccard":
            return sums["n"] / (sums["raters_x"] + sums["raters_y"] - sums["n"])
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def read_titles(path, counters):
    """Map movie id -> title from u.item ('|', latin-1), movies.dat ('::') or movies.csv (UTF-8).

    The file may be gzip or bzip2 compressed. Ids lose their leading zeros (canonical_id); when an
    id comes twice, its first title is kept and the others are counted.
    """
    titles = {}
    with open_movies_file(path) as movies_file:
        for raw_line in movies_file:
            parsed = _parse_title_line(raw_line.removeprefix(UTF8_BOM).rstrip(b"\r\n"), counters)
            if not parsed:
                continue
            if parsed[0] in titles:
                counters["titles: duplicate movie ids skipped (first title kept)"] += 1
                continue
            titles[parsed[0]] = parsed[1]
    return titles


def open_movies_file(path):
    """The movies file open for reading bytes, decompressed if gzip or bzip2; OSError if unreadable."""
    with open(path, "rb") as probe:
        magic = probe.read(3)
    for prefix, opener in COMPRESSED_OPENERS:
        if magic.startswith(prefix):
            return opener(path, "rb")
    return open(path, "rb")


def _parse_title_line(raw_line, counters):
    if not raw_line.strip():
        return None
    if b"::" in raw_line or (b"|" in raw_line and b"," not in raw_line.split(b"|")[0]):
        text = _decode_title_line(raw_line, fallback="latin-1", counters=counters)
        fields = text.split("::") if "::" in text else text.split("|")
    else:
        fields = next(csv.reader([_decode_title_line(raw_line, "replace", counters)]))
    if len(fields) < 2 or not (fields[0].strip().isascii() and fields[0].strip().isdigit()):
        if fields[0].strip().lower() not in ("movieid", "movie_id", "item_id"):
            counters["titles: bad lines skipped"] += 1
        return None
    return canonical_id(fields[0].strip()), fields[1]


def _decode_title_line(raw_line, fallback, counters):
    """UTF-8 first; the older releases are latin-1, and a CSV line that is neither is counted."""
    try:
        return raw_line.decode("utf-8")
    except UnicodeDecodeError:
        if fallback == "latin-1":
            return raw_line.decode("latin-1")
        counters["titles: undecodable bytes replaced"] += 1
        return raw_line.decode("utf-8", errors="replace")


def rank_neighbours(values):
    """Sort the 'movie score co_raters' entries of values (each one or more entries joined by
    NEIGHBOUR_SEPARATOR) by score descending, then by movie id.

    Returns (movie, score, co_raters) with score and co_raters as the text they came in: the
    score is repr(float), which is already its JSON form.
    """
    neighbours = [entry.split(" ") for value in values for entry in value.split(NEIGHBOUR_SEPARATOR)]
    neighbours.sort(key=_neighbour_order)
    return neighbours


def _neighbour_order(neighbour):
    movie, score, _ = neighbour
    return (-float(score), 0, int(movie), "") if movie.isdigit() else (-float(score), 1, 0, movie)


class PreformattedJSONProtocol(JSONProtocol):
    """mrjob's JSON protocol for reading; writes keys and values that are JSON text already.

    The final reducer formats each line itself, each movie's id and title encoded once (with
    json.dumps' defaults, as JSONProtocol writes them) rather than once per neighbour line.
    """

    def write(self, key, value):
        return f"{key}\t{value}".encode("utf-8")


class MRMovieSimilarities(MRJob):
    """Movie pairs whose ratings agree, with their similarity and number of co-raters."""

    INPUT_PROTOCOL = BytesValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = PreformattedJSONProtocol

    def configure_args(self):
        super().configure_args()
        self.add_file_arg(
            "--items",
            help="movies file with titles: u.item, movies.dat or movies.csv, plain or gzip/bzip2 compressed; "
                 "checked before the first stage (optional; without it titles are null)")
        self.add_passthru_arg(
            "--metric", choices=METRICS, default="cosine",
            help="cosine: sum(x*y) / (sqrt(sum x^2) * sqrt(sum y^2)) over co-raters, raw ratings "
                 "(default); pearson: correlation over co-raters, each movie centred on its mean "
                 "over them (pairs with constant ratings have none and are dropped); jaccard: "
                 "co-raters / users who rated either movie")
        self.add_passthru_arg(
            "--min-score", type=float, default=0.95,
            help="keep pairs scoring strictly above this (default 0.95)")
        self.add_passthru_arg(
            "--min-co-ratings", type=int, default=10,
            help="keep pairs with strictly more co-raters than this (default 10)")
        self.add_passthru_arg(
            "--max-bad-fraction", type=float, default=0.01,
            help="fail when more than this fraction of an input file's lines are bad (default 0.01)")
        self.add_passthru_arg(
            "--sample-fraction", type=float, default=1.0,
            help="use only this fraction of users, chosen deterministically by user id (default 1)")
        self.add_passthru_arg(
            "--movie-blocks", type=int, default=4,
            help="movies are split into this many blocks; stage 2 has one reduce key per block "
                 "pair (blocks*(blocks+1)/2 keys), each rating is shuffled this many times, and "
                 "a stage 2 task's memory falls with its square (default 4)")
        self.add_file_arg(
            "--block-plan",
            help="JSON from movielens_emr.engine.similarity.block_plan.write_block_plan: each movie's block "
                 "(balanced by rating mass; movies it lacks are hashed) and each block pair's reduce task "
                 "(balanced by measured work) for its number of reduce tasks (optional)")
        self.add_passthru_arg(
            "--reduce-tasks", type=int, default=0,
            help="stage 2 reduce tasks that block pairs are routed onto through Hadoop's "
                 "HashPartitioner (default 0: the jobconf mapreduce.job.reduces if set, else no routing)")
        self.add_passthru_arg(
            "--user-chunk", type=int, default=1024,
            help="users per dense matrix product in stage 2, at most 65536 (default 1024)")

    def load_args(self, args):
        super().load_args(args)
        options = self.options
        if not 0 < options.sample_fraction <= 1:
            self.arg_parser.error("--sample-fraction must be in (0, 1]")
        if not 0 <= options.max_bad_fraction <= 1:
            self.arg_parser.error("--max-bad-fraction must be in [0, 1]")
        if options.movie_blocks < 1:
            self.arg_parser.error("--movie-blocks must be at least 1")
        if options.reduce_tasks < 0:
            self.arg_parser.error("--reduce-tasks must be at least 0")
        if not 1 <= options.user_chunk <= 65536:
            self.arg_parser.error("--user-chunk must be in 1..65536")
        if options.min_co_ratings < 0:
            self.arg_parser.error("--min-co-ratings must be at least 0")
        if not math.isfinite(options.min_score):
            self.arg_parser.error(f"--min-score must be a finite number, got {options.min_score}")

    def steps(self):
        return [
            MRStep(mapper_init=self.mapper_init_counters,
                   mapper=self.mapper_parse_rating,
                   mapper_final=self.mapper_final_flush_users,
                   reducer_init=self.reducer_init_counters,
                   reducer=self.reducer_group_by_user,
                   reducer_final=self.flush_counters),
            MRStep(mapper_init=self.mapper_init_blocks,
                   mapper=self.mapper_split_user_into_blocks,
                   reducer_init=self.reducer_init_counters,
                   reducer=self.reducer_compute_block_similarities,
                   reducer_final=self.reducer_final_report_work),
            # No mapper: stage 2 already wrote both directions of every kept pair.
            MRStep(reducer_init=self.reducer_init_load_titles,
                   reducer=self.reducer_rank_neighbours,
                   reducer_final=self.flush_counters),
        ]

    # Counters are summed in memory and written once per task: each Hadoop counter
    # update is a line on stderr, too slow to write per record.
    def flush_counters(self):
        for name, amount in self._counters.items():
            if amount:
                group, _, counter = name.partition(": ")
                self.increment_counter(group, counter, amount)

    # Stage 1: parse ratings and group them by user. Ratings are combined per user inside
    # the mapper (files are often sorted by user), which spares a combiner process per task.
    def mapper_init_counters(self):
        self._counters = Counter()
        self._bad_example = None
        self._user_tokens = {}
        self._buffered = 0

    def mapper_parse_rating(self, _, line):
        """line -> (user_id, 'movie_id:rating_letter:timestamp ...'), flushed every USER_BUFFER ratings"""
        try:
            rating = parse_rating_line(line)
        except BadRatingLine as bad:
            self._counters["bad lines: " + str(bad)] += 1
            self._counters["input: bad lines skipped"] += 1
            self._bad_example = self._bad_example or (line[:200], str(bad))
            return
        if rating is None:
            self._counters["input: header or blank lines skipped"] += 1
            return
        user, movie, doubled, timestamp = rating
        self._counters["input: ratings read"] += 1
        if not in_sample(user, self.options.sample_fraction):
            self._counters["input: ratings outside the sample"] += 1
            return
        token = f"{movie}:{chr(RATING_LETTER_BASE + doubled)}:{timestamp}"
        self._user_tokens.setdefault(user, []).append(token)
        self._buffered += 1
        if self._buffered >= USER_BUFFER:
            yield from self._flush_users()

    def _flush_users(self):
        for user, tokens in self._user_tokens.items():
            yield user, " ".join(tokens)
        self._user_tokens, self._buffered = {}, 0

    def mapper_final_flush_users(self):
        self.flush_counters()
        yield from self._flush_users()
        bad = self._counters["input: bad lines skipped"]
        lines = bad + self._counters["input: ratings read"]
        if not lines:
            log.warning("no ratings in this map task's input")
        example = self._bad_example[0].decode("latin-1") if bad else ""
        reason = self._bad_example[1] if bad else ""
        input_file = jobconf_from_env("mapreduce.map.input.file", "(input)")
        yield INPUT_QUALITY_KEY, json.dumps([input_file, lines, bad, example, reason])

    def reducer_group_by_user(self, user, token_lists):
        """(user_id, token lists) -> (user_id, 'movie movie ...|letters'), one rating per movie"""
        if user == INPUT_QUALITY_KEY:
            check_bad_lines(token_lists, self.options.max_bad_fraction)
            return
        tokens = " ".join(token_lists).split(" ")
        ratings, duplicates = latest_ratings(tokens)
        if duplicates:
            self.increment_counter("input", "duplicate ratings dropped (latest kept)", duplicates)
        self._counters[f"{WORK_GROUP}: {PAIR_WORK_COUNTER}"] += len(ratings) ** 2
        yield user, " ".join(ratings) + "|" + "".join(ratings.values())

    # Stage 2: pair statistics and similarity, one reduce key per block pair.
    def mapper_init_blocks(self):
        plan = load_block_plan(self.options.block_plan, self.options.movie_blocks)
        self._block_of = dict(plan.get("blocks", {}))
        reduce_tasks = self.options.reduce_tasks or int(jobconf_from_env("mapreduce.job.reduces", 0) or 0)
        self._keys = {}
        if reduce_tasks > 1:
            routes = plan.get("routes") if plan.get("reduce_tasks") == reduce_tasks else None
            routes = routes or dealt_routes(self.options.movie_blocks, reduce_tasks)
            self._keys = {pair: routed_key(pair, task, reduce_tasks) for pair, task in routes.items()}

    def mapper_split_user_into_blocks(self, _, ratings):
        """(user_id, 'movies|letters') -> ('a,b[@salt]', 'movies_a|letters_a|movies_b|letters_b')"""
        movies, letters = ratings.split("|")
        blocks = {}
        for movie, letter in zip(movies.split(" "), letters):
            block = self._block_of.get(movie)
            if block is None:
                block = self._block_of[movie] = zlib.crc32(movie.encode()) % self.options.movie_blocks
            block_movies, block_letters = blocks.setdefault(block, ([], []))
            block_movies.append(movie)
            block_letters.append(letter)
        side = {block: " ".join(ms) + "|" + "".join(ls) for block, (ms, ls) in blocks.items()}
        pairs = block_pairs_for_user(blocks, self.options.movie_blocks, self.options.metric == "jaccard")
        for a, b in pairs:
            pair = f"{a},{b}"
            yield self._keys.get(pair, pair), side[a] if a == b else side.get(a, "|") + "|" + side.get(b, "|")

    def reducer_init_counters(self):
        self._counters = Counter()
        self._task_work = 0

    def reducer_compute_block_similarities(self, key, user_rows):
        """('a,b[@salt]', user rows) -> (movie_id, 'similar_movie_id score co_raters'), both
        directions of each kept pair"""
        a, b = key.split(ROUTE_SALT)[0].split(",")
        accumulator = BlockAccumulator(METRIC_STATS[self.options.metric], diagonal=a == b)
        chunk = []
        for row in user_rows:
            chunk.append(row)
            if len(chunk) == self.options.user_chunk:
                self._task_work += accumulator.add_users(chunk)
                chunk = []
        if chunk:
            self._task_work += accumulator.add_users(chunk)
        yield from self._kept_pairs(accumulator)

    def reducer_final_report_work(self):
        """This task's work as a counter of its own, even when 0: the skew's mean counts idle tasks."""
        self.flush_counters()
        task = int(jobconf_from_env("mapreduce.task.partition", 0) or 0)
        if task < MAX_TASK_WORK_COUNTERS:
            self.increment_counter(TASK_WORK_GROUP, f"reduce task {task:03d}", self._task_work)

    def _kept_pairs(self, accumulator):
        """(movie, its kept neighbours in this block pair as NEIGHBOUR_SEPARATOR-joined entries), both
        directions of each kept pair: a row's movie as soon as its slice is scored, a column's movie
        when HELD_NEIGHBOURS entries wait or the block pair is done."""
        movies_a, movies_b = accumulator.movies_a, accumulator.movies_b
        held, held_count = {}, 0
        # Scored a slice of rows at a time, so the temporaries stay small next to the sums.
        for first_row in range(0, len(movies_a), SCORING_ROWS):
            i, j = accumulator.candidate_pairs(
                self.options.min_co_ratings, first_row, first_row + SCORING_ROWS)
            sums = accumulator.pair_sums(i, j)
            scores = similarity_scores(self.options.metric, sums)
            kept = scores > self.options.min_score
            self._counters["pairs: over min co-ratings"] += len(i)
            self._counters["pairs: kept"] += int(kept.sum())
            columns = (i[kept].tolist(), j[kept].tolist(), scores[kept].tolist(), sums["n"][kept].tolist())
            row_movie, row_entries = None, []
            # np.nonzero lists a slice's pairs row by row: each row's entries are consecutive.
            for a, b, score, co_raters in zip(*columns):
                movie_a, movie_b, rest = movies_a[a], movies_b[b], f"{score!r} {int(co_raters)}"
                if movie_a != row_movie:
                    if row_entries:
                        yield row_movie, NEIGHBOUR_SEPARATOR.join(row_entries)
                    row_movie, row_entries = movie_a, []
                row_entries.append(f"{movie_b} {rest}")
                held.setdefault(movie_b, []).append(f"{movie_a} {rest}")
            if row_entries:
                yield row_movie, NEIGHBOUR_SEPARATOR.join(row_entries)
            held_count += len(columns[0])
            if held_count > HELD_NEIGHBOURS:
                yield from self._release(held)
                held, held_count = {}, 0
        yield from self._release(held)

    @staticmethod
    def _release(held):
        for movie, entries in held.items():
            yield movie, NEIGHBOUR_SEPARATOR.join(entries)

    # Stage 3: titles, neighbours ranked by score.
    def reducer_init_load_titles(self):
        self._counters = Counter()
        # Every stage 3 reducer reads the whole movies file; only the first reports what it found
        # there, so each title counter counts once, however many reducers the stage has.
        first_reducer = jobconf_from_env("mapreduce.task.partition", "0") == "0"
        title_counters = self._counters if first_reducer else Counter()
        self._titles = read_titles(self.options.items, title_counters) if self.options.items else {}
        self._movie_json = {}

    def reducer_rank_neighbours(self, movie, values):
        """(movie, 'similar_id score co_raters' values) -> ([movie_id, title],
        [similar_id, similar_title, score, co_raters]) as JSON text, best neighbour first"""
        if movie not in self._titles:
            self._counters["output: movies without a title"] += 1
        key = f"[{self._id_and_title(movie)}]"
        neighbours = rank_neighbours(values)
        self._counters["output: ordered pairs"] += len(neighbours)
        for other, score, co_raters in neighbours:
            yield key, f"[{self._id_and_title(other)}, {score}, {co_raters}]"

    def _id_and_title(self, movie):
        """'"id", "title"' (or null), JSON-encoded once per movie."""
        encoded = self._movie_json.get(movie)
        if encoded is None:
            encoded = self._movie_json[movie] = f"{json.dumps(movie)}, {json.dumps(self._titles.get(movie))}"
        return encoded

    def make_runner(self):
        """mrjob's runner, once --items is found readable; a failed step raises the task's own error."""
        check_items_file(self.options.items)
        self._runner = runner = super().make_runner()
        run = runner.run

        def run_raising_task_errors():
            try:
                run()
            except StepFailedException as failure:
                task_error = failed_task_error(runner, failure)
                if task_error is None:
                    raise
                # mrjob has logged the task's traceback; the job's message is the clearest last word.
                raise task_error from None

        runner.run = run_raising_task_errors
        return runner

    # Command line: a summary after the run, so an empty or mostly-skipped input is obvious; when
    # the run fails on purpose, the summary of what was read, then the reason, as the last lines.
    def run_job(self):
        try:
            super().run_job()
        except ItemsFileUnusable as error:
            log.error("%s: %s", type(error).__name__, error)
            sys.exit(1)
        except tuple(TASK_ERRORS.values()) as error:
            log.error(run_summary(self._runner.counters(), failure=error))
            sys.exit(1)
        log.info(run_summary(self._runner.counters()))


def check_items_file(path):
    """Raise ItemsFileUnusable unless the local movies file `path`, if any, opens; URIs are left to mrjob."""
    if not path or "://" in path:
        return
    try:
        open_movies_file(path).close()
    except OSError as error:
        raise ItemsFileUnusable(f"--items {path}: {error.strerror or error}") from None


def failed_task_error(runner, failure):
    """The job's own error (a TASK_ERRORS instance) that ended the failed task, if the task's stderr says so.

    Only mrjob's local runner reports which task failed; any other failure gives None.
    """
    task = tuple(getattr(failure, field, None) for field in ("task_type", "step_num", "task_num"))
    if None in task:
        return None
    try:
        with open(runner._task_stderr_path(*task), errors="replace") as stderr:
            lines = stderr.read().splitlines()
    except (AttributeError, OSError):
        return None
    for line in reversed(lines):
        name, separator, message = line.partition(": ")
        error = TASK_ERRORS.get(name.rpartition(".")[2]) if separator else None
        if error:
            return error(message)
    return None


def run_summary(step_counters, failure=None):
    """One paragraph on what a run read, skipped and kept, from mrjob's per-step counters.

    A failed run's paragraph ends with the job's error, `Name: message`.
    """
    totals = Counter()
    for step in step_counters:
        for group, counters in step.items():
            for name, amount in counters.items():
                totals[f"{group}: {name}"] += amount
    lines = [f"{name}: {amount:,}" for name, amount in sorted(totals.items())]
    if failure is not None:
        return "Run summary:\n  " + "\n  ".join(lines) + f"\n{type(failure).__name__}: {failure}"
    if not totals["input: ratings read"]:
        lines.append("The input held no ratings: the output is empty.")
    elif not totals["output: ordered pairs"]:
        lines.append("No movie pair passed --min-co-ratings and --min-score: the output is empty.")
    return "Run summary:\n  " + "\n  ".join(lines)


if __name__ == "__main__":
    MRMovieSimilarities.run()
