"""The movie similarity job's rules and math as plain functions, shipped beside jobs/movie_similarities.py.

The job imports it by name from its own folder (see the job file's header); the pipeline imports it the
same way to apply the same parsing and routing (movielens_emr.engine.similarity.job.job_kernel). Python
3.9 and the standard library (numpy inside the functions of stages 2 and 3), as on the EMR nodes.
"""
import bz2
import csv
import gzip
import json
import math
import re
import zlib
from collections import Counter, namedtuple

# numpy is imported inside the functions that use it: only the reducers of stages 2 and 3 need it, and
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


class BadBlockPlan(ValueError):
    """A --block-plan file that does not fit this run's --movie-blocks."""


# A stage 2 reducer's rule for the pairs it writes: scored by `metric`, kept with more than
# min_co_ratings co-raters and a score above min_score.
PairRule = namedtuple("PairRule", ["metric", "min_co_ratings", "min_score"])


# --- stage 1: ratings, their quality, the sample, one rating per movie ----------------------------
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


def excess_bad_lines(task_reports, max_bad_fraction):
    """Why a run must stop when an input file's bad lines exceed max_bad_fraction of its lines: the first
    such file (by name), its counts and an example bad line with its reason; None when none does.

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
            return (f"{bad:,} of {lines:,} ratings lines in {input_file} are bad, above "
                    f"--max-bad-fraction {max_bad_fraction}; e.g. {example!r} ({reason})")
    return None


def in_sample(user_id, sample_fraction):
    """Whether a user belongs to the deterministic sample: the same users for the same fraction."""
    return sample_fraction >= 1 or zlib.crc32(user_id.encode()) < sample_fraction * 2**32


def rating_token(movie, doubled, timestamp):
    """A rating as stage 1 shuffles it: 'movie:letter:timestamp', the doubled rating as one letter."""
    return f"{movie}:{chr(RATING_LETTER_BASE + doubled)}:{timestamp}"


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


def user_ratings_record(ratings):
    """A user's ratings ({movie: letter}) as stage 1 writes them: 'movie movie ...|letters'."""
    return " ".join(ratings) + "|" + "".join(ratings.values())


# --- stage 2: blocks, their routes onto reduce tasks, the block pairs' sums and scores ------------
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


def block_rows(ratings, block_of, movie_blocks, needs_marginals):
    """("a,b", row) for each block pair a user's ratings ('movies|letters') reach (block_pairs_for_user);
    a row is 'movies_a|letters_a|movies_b|letters_b', 'movies|letters' on the diagonal.

    A movie's block is block_of's (a block plan's); a movie it lacks is hashed into one of movie_blocks,
    and block_of keeps the answer for the task's next users.
    """
    movies, letters = ratings.split("|")
    blocks = {}
    for movie, letter in zip(movies.split(" "), letters):
        block = block_of.get(movie)
        if block is None:
            block = block_of[movie] = zlib.crc32(movie.encode()) % movie_blocks
        block_movies, block_letters = blocks.setdefault(block, ([], []))
        block_movies.append(movie)
        block_letters.append(letter)
    side = {block: " ".join(ms) + "|" + "".join(ls) for block, (ms, ls) in blocks.items()}
    for a, b in block_pairs_for_user(blocks, movie_blocks, needs_marginals):
        yield f"{a},{b}", side[a] if a == b else side.get(a, "|") + "|" + side.get(b, "|")


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


def routed_keys(plan, movie_blocks, reduce_tasks):
    """{"a,b": its routed key} for every block pair: the plan's routes when it was made for reduce_tasks,
    else dealt_routes; {} with at most one reduce task, which every key reaches anyway."""
    if reduce_tasks <= 1:
        return {}
    routes = plan.get("routes") if plan.get("reduce_tasks") == reduce_tasks else None
    routes = routes or dealt_routes(movie_blocks, reduce_tasks)
    return {pair: routed_key(pair, task, reduce_tasks) for pair, task in routes.items()}


def block_pair_of(key):
    """The block pair (a, b), as text, of a stage 2 key 'a,b' or 'a,b@salt'."""
    a, b = key.split(ROUTE_SALT)[0].split(",")
    return a, b


# A user's row is summed by one of two paths, to the same integer sums, so the answer never depends on the
# choice: the dense path multiplies a batch of users' rating matrices (its cost: the users times the
# batch's movies on each side), the sparse path sums each user's co-rated pairs directly (its cost: the
# pairs). A row takes the dense path when its co-rated pairs are at least DENSE_ROW_SHARE of the block
# pair's movie pairs so far: a dense cell of a row costs about 1/250 of a summed pair on one core
# (benchmarks/stage2_paths.py times both paths). Heavy raters go dense, the many light ones sparse.
DENSE_ROW_SHARE = 0.004
# A dense batch's products cost as much again as this many rows to write and add into the sums: a batch
# of a few heavy rows (the last of a block pair) is summed by the sparse path when that costs less.
DENSE_BATCH_ROWS = 96
PATHS = ("dense", "sparse")
# The sparse path sums at most a quarter as many co-rated pairs at once as the block pair has cells (at
# least MIN_SPARSE_BATCH_PAIRS): its temporaries and waiting rows, about 36 bytes a pair (42 for pearson),
# stay within the sums' share of the job's documented memory bound, and each batch's pass over the sums
# is spread over many pairs.
SPARSE_BATCH_SHARE = 4
MIN_SPARSE_BATCH_PAIRS = 1 << 16
# Cells of the sums the sparse path adds at once (each slice's counts stay in the CPU's cache).
SLICE_CELLS = 1 << 17
# Users of a dense batch at most: its float32 products stay exact (sums below 100 * 2**16 < 2**24).
MAX_CHUNK_USERS = 1 << 16
# The sums are kept two to a float64, PACK apart (first + PACK * second), so that one bincount or one
# update adds both. The packed totals stay exact (below 2**52) while each sum stays below PACK: at most
# PACKED_USERS users (a doubled rating's square is at most 100) before they are unpacked into the sums.
PACK = 2.0 ** 26
PACKED_USERS = 2 ** 26 // 100
# The term each co-rated pair adds to each sum, x and y being the two movies' doubled ratings.
PAIR_TERMS = {
    "n": lambda x, y: x ** 0,
    "sxy": lambda x, y: x * y,
    "sxx": lambda x, y: x * x,
    "syy": lambda x, y: y * y,
    "sx": lambda x, y: x,
    "sy": lambda x, y: y,
}
# A stage 2 mapper writes a key's rows ROW_BATCH_BYTES at a time as one record, the rows joined by '|' as
# their own fields are: one shuffled line per batch, not per user (rows are short at high block counts).
ROW_BATCH_BYTES = 1 << 16
ROW_SEPARATOR = "|"

# One side of a batch of user rows: ratings per user, each rating's column in the block's index and its
# doubled rating (uint8, 1..10), user by user.
UserRatings = namedtuple("UserRatings", ["lengths", "cols", "vals"])


class RowBatches:
    """A stage 2 mapper's rows, held per key and given back as records of ROW_BATCH_BYTES or so."""

    def __init__(self):
        self.held = {}

    def add(self, key, row):
        """Hold a row; (key, record) when the key's rows reach ROW_BATCH_BYTES, else None."""
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = [[], 0]
        held[0].append(row)
        held[1] += len(row) + 1
        if held[1] < ROW_BATCH_BYTES:
            return None
        del self.held[key]
        return key, ROW_SEPARATOR.join(held[0])

    def drain(self):
        """(key, record) of every key's rows still held."""
        records = [(key, ROW_SEPARATOR.join(rows)) for key, (rows, _) in self.held.items()]
        self.held = {}
        return records


class BlockAccumulator:
    """Exact co-rating sums for every movie pair of one block pair (a, b), fed records of user rows.

    Each user row is 'movies_a|letters_a|movies_b|letters_b' ('movies|letters' on the diagonal); a record
    is one or more rows joined by '|'. Sums are over doubled ratings, so they are integers whichever path
    adds them: the dense path's float32 products are exact while a batch's sums stay below 2**24, the
    sparse path's float64 counts, and the packed float64 totals, while each sum stays below PACK. On the
    diagonal only the pairs i < j are certain to be summed (candidate_pairs reads no others). `path`
    ("dense" or "sparse") sends every row one way, for tests and benchmarks; by default each row goes the
    way its density says (DENSE_ROW_SHARE).
    """

    def __init__(self, stats, diagonal, path=None):
        import numpy as np
        if path not in (None, *PATHS):
            raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
        self.stats = stats
        self.diagonal = diagonal
        self.path = path
        self.index_a, self.index_b = {}, ({} if not diagonal else None)
        # The sums two to an array (_packed_stats), made when the first batch is summed; users they hold.
        self.packed, self.packed_users = [], 0
        # The sums by name unpacked when more than PACKED_USERS users came (none for MovieLens releases).
        self.spilled = {}
        self.raters_a = np.zeros(0)
        self.raters_b = np.zeros(0)
        self.chunk_users = MAX_CHUNK_USERS
        self.pending = {name: [] for name in PATHS}

    @property
    def movies_a(self):
        return list(self.index_a)

    @property
    def movies_b(self):
        return list(self.index_a if self.diagonal else self.index_b)

    def add_user_rows(self, records, chunk_users):
        """Add every user row of records (an iterable), parsed chunk_users rows at a time, each summed by
        its path; the sums are complete on return. Returns the rows' work, the sum over users of n_a * n_b."""
        self.chunk_users = chunk_users
        width = 2 if self.diagonal else 4
        work, fields = 0, []
        for record in records:
            fields += record.split(ROW_SEPARATOR)
            while len(fields) >= chunk_users * width:
                work += self._route(fields[: chunk_users * width])
                del fields[: chunk_users * width]
        if fields:
            work += self._route(fields)
        for path in PATHS:
            self._flush(path)
        self._grow(len(self.index_a), len(self.index_a if self.diagonal else self.index_b))
        return work

    def add_users(self, rows):
        """Add one chunk of user rows (at most MAX_CHUNK_USERS); returns its work (add_user_rows)."""
        return self.add_user_rows(rows, max(len(rows), 1))

    def _route(self, fields):
        """Parse a chunk of rows' fields, count its raters and hold each row for its path; its work."""
        import numpy as np
        left, right = self._parse(fields)
        self.raters_a = _grown(self.raters_a, (len(self.index_a),))
        self.raters_a += np.bincount(left.cols, minlength=len(self.raters_a))
        if not self.diagonal:
            self.raters_b = _grown(self.raters_b, (len(self.index_b),))
            self.raters_b += np.bincount(right.cols, minlength=len(self.raters_b))
        pairs = left.lengths * right.lengths
        dense = self._dense_rows(pairs)
        for path, chosen in (("dense", dense), ("sparse", ~dense & (pairs > 0))):
            if chosen.any():
                self._hold(path, left, right, chosen, pairs[chosen])
        return int(pairs.sum())

    def _parse(self, fields):
        """A chunk's two sides as UserRatings (one on the diagonal), new movies added to the indexes."""
        width = 2 if self.diagonal else 4
        left = _user_ratings(fields[0::width], fields[1::width], self.index_a)
        if self.diagonal:
            return left, left
        return left, _user_ratings(fields[2::width], fields[3::width], self.index_b)

    def _dense_rows(self, pairs):
        """Which rows take the dense path: their pairs against the block pair's cells so far."""
        import numpy as np
        if self.path is not None:
            return np.full(len(pairs), self.path == "dense") & (pairs > 0)
        cells = len(self.index_a) * len(self.index_a if self.diagonal else self.index_b)
        return pairs >= max(DENSE_ROW_SHARE * cells, 1)

    def _hold(self, path, left, right, chosen, pairs):
        """Queue the chosen rows for `path`, summing its batch when they fill it: the dense batch at
        chunk_users users, the sparse one at _sparse_batch_pairs() pairs."""
        dense = path == "dense"
        limit, most_pairs = (self.chunk_users, math.inf) if dense else (math.inf, self._sparse_batch_pairs())
        held = self.pending[path]
        if held and (sum(len(part[2]) for part in held) + len(pairs) > limit
                     or sum(int(part[2].sum()) for part in held) + int(pairs.sum()) > most_pairs):
            self._flush(path)
        right_rows = None if self.diagonal else _rows_of(right, chosen)
        self.pending[path].append((_rows_of(left, chosen), right_rows, pairs))
        if int(pairs.sum()) >= most_pairs:
            self._flush(path)

    def _sparse_batch_pairs(self):
        cells = len(self.index_a) * len(self.index_a if self.diagonal else self.index_b)
        return max(MIN_SPARSE_BATCH_PAIRS, cells // SPARSE_BATCH_SHARE)

    def _flush(self, path):
        """Sum the rows waiting for `path` into the packed sums."""
        held, self.pending[path] = self.pending[path], []
        if not held:
            return
        left = _joined_ratings([part[0] for part in held])
        right = left if self.diagonal else _joined_ratings([part[1] for part in held])
        self._grow(len(self.index_a), len(self.index_a if self.diagonal else self.index_b))
        if self.packed_users + len(left.lengths) > PACKED_USERS:
            self._spill()
        self.packed_users += len(left.lengths)
        pairs = sum(int(part[2].sum()) for part in held)
        if path == "dense" and (self.path == "dense" or not self._cheaper_sparse(len(left.lengths), pairs)):
            self._add_dense(left, right)
        else:
            self._add_sparse(left, right)

    def _cheaper_sparse(self, users, pairs):
        """Whether a dense batch of `users` rows holding `pairs` co-rated pairs costs less summed by the
        sparse path: a product's cost is its rows, plus DENSE_BATCH_ROWS for writing it, times the cells."""
        cells = len(self.index_a) * len(self.index_a if self.diagonal else self.index_b)
        return pairs < DENSE_ROW_SHARE * (users + DENSE_BATCH_ROWS) * cells

    def _add_dense(self, left, right):
        """Add a batch's sums by dense matrix products over its users (users x the block's movies so far)."""
        import numpy as np
        rows, cols = len(self.index_a), len(self.index_a if self.diagonal else self.index_b)
        ratings_a, rated_a = _dense_matrices(left, rows)
        ratings_b, rated_b = (ratings_a, rated_a) if self.diagonal else _dense_matrices(right, cols)
        products = {
            "n": lambda: rated_a.T @ rated_b,
            "sxy": lambda: ratings_a.T @ ratings_b,
            "sxx": lambda: np.square(ratings_a).T @ rated_b,
            "syy": lambda: rated_a.T @ np.square(ratings_b),
            "sx": lambda: ratings_a.T @ rated_b,
            "sy": lambda: rated_a.T @ ratings_b,
        }
        for packed, (first, second) in zip(self.packed, _packed_stats(self.stats)):
            # One float32 product at a time, added in place; scaling by PACK (a power of two) is exact.
            packed[:rows, :cols] += products[first]()
            if second:
                product = products[second]()
                product *= PACK
                packed[:rows, :cols] += product

    def _add_sparse(self, left, right):
        """Add a batch's sums from each user's co-rated pairs, _sparse_batch_pairs() at a time."""
        import numpy as np
        rows, cols = len(self.index_a), len(self.index_a if self.diagonal else self.index_b)
        # Rows of the sums added at once: a slice of about SLICE_CELLS cells stays in the CPU's cache.
        slice_rows = max(1, SLICE_CELLS // cols)
        first_rows = range(0, rows, slice_rows)
        tables = _packed_term_tables(self.stats)
        for part_left, part_right in _pair_batches(left, right, self.diagonal, self._sparse_batch_pairs()):
            cells, ratings = co_rated_pairs(part_left, part_right, self.diagonal, cols)
            bounds = np.searchsorted(cells, [row * cols for row in first_rows] + [rows * cols])
            weights = [table[ratings] for table in tables]
            for row, start, end in zip(first_rows, bounds[:-1], bounds[1:]):
                if start < end:
                    end_row = min(row + slice_rows, rows)
                    slice_cells = cells[start:end] - row * cols
                    for packed, pair_weights in zip(self.packed, weights):
                        packed[row:end_row, :cols] += np.bincount(
                            slice_cells, pair_weights[start:end],
                            minlength=(end_row - row) * cols).reshape(end_row - row, cols)

    def _spill(self):
        """Add the packed sums into the spilled ones by name (made the first time), and zero them."""
        import numpy as np
        for number, (first, second) in enumerate(_packed_stats(self.stats)):
            for name, sums in zip((first, second), _unpacked(self.packed[number])):
                if name in self.spilled:
                    self.spilled[name] += sums
                elif name:
                    self.spilled[name] = sums
            self.packed[number] = np.zeros_like(self.packed[number])
        self.packed_users = 0

    def _grow(self, rows, cols):
        """Packed (and any unpacked) sums of at least rows x cols: exactly that the first time, then with
        25% headroom, so that few regrowths follow as a block's movies arrive, and little memory is unused."""
        import numpy as np
        if not self.packed:
            self.packed = [np.zeros((rows, cols)) for _ in _packed_stats(self.stats)]
        old_rows, old_cols = self.packed[0].shape
        if rows <= old_rows and cols <= old_cols:
            return
        rows, cols = max(rows, old_rows * 5 // 4), max(cols, old_cols * 5 // 4)
        # One array at a time, so that at most one old array is held beside the new ones.
        for number in range(len(self.packed)):
            self.packed[number] = _grown(self.packed[number], (rows, cols))
        for name in self.spilled:
            self.spilled[name] = _grown(self.spilled[name], (rows, cols))

    def candidate_pairs(self, min_co_ratings, first_row, end_row):
        """Index arrays (i, j) of the pairs of rows first_row..end_row-1 with more than
        min_co_ratings co-raters, each unordered pair once."""
        import numpy as np
        cols = len(self.index_a if self.diagonal else self.index_b)
        keep = self._sums_at("n", (slice(first_row, end_row), slice(0, cols))) > min_co_ratings
        if self.diagonal:
            keep = np.triu(keep, k=first_row + 1)
        i, j = np.nonzero(keep)
        return i + first_row, j

    def pair_sums(self, i, j):
        """The named sums at the pairs (i, j); on the diagonal, raters of j come from side a."""
        sums = {name: self._sums_at(name, (i, j)) for name in self.stats}
        sums["raters_x"] = self.raters_a[i]
        sums["raters_y"] = (self.raters_a if self.diagonal else self.raters_b)[j]
        return sums

    def unpacked_sums(self):
        """{name: rows x columns array of its sums}, the block pair's movies in the indexes' order."""
        cells = (slice(0, len(self.index_a)), slice(0, len(self.index_a if self.diagonal else self.index_b)))
        return {name: self._sums_at(name, cells) for name in self.stats}

    def _sums_at(self, name, cells):
        """The named sums at `cells` (an index of the packed arrays), unpacked, with any spilled ones."""
        for number, names in enumerate(_packed_stats(self.stats)):
            if name in names:
                sums = _unpacked(self.packed[number][cells])[names.index(name)]
                return sums + self.spilled[name][cells] if name in self.spilled else sums
        raise KeyError(name)


def co_rated_pairs(left, right, diagonal, width):
    """Every co-rated pair of a batch of users, as arrays ordered by i: its cell i * width + j (i the left
    movie's column, j the right one's) and its ratings, 10 * (x - 1) + (y - 1) for doubled ratings x, y.
    On the diagonal (right is left) only the pairs with i < j.

    Each left rating pairs with a run of right ratings, [start, start + count) of its user's: all of them
    off the diagonal; on it, with the ratings sorted by column within each user, those after it. The left
    ratings are taken in column order, so that the pairs fill the sums one row at a time.
    """
    import numpy as np
    users = np.repeat(np.arange(len(left.lengths)), left.lengths)
    right_starts = np.cumsum(right.lengths) - right.lengths
    if diagonal:
        by_user = np.lexsort((left.cols, users))
        left = right = UserRatings(left.lengths, left.cols[by_user], left.vals[by_user])
        starts = np.arange(1, len(users) + 1)
        counts = right_starts[users] + right.lengths[users] - starts
    else:
        starts, counts = right_starts[users], right.lengths[users]
    by_column = np.argsort(left.cols, kind="stable")
    starts, counts = starts[by_column], counts[by_column]
    runs = np.cumsum(counts) - counts
    partner = np.arange(int(counts.sum()))
    partner -= np.repeat(runs - starts, counts)
    cells = np.repeat(left.cols[by_column] * width, counts)
    cells += right.cols[partner]
    ratings = np.repeat((left.vals[by_column] - 1) * 10, counts)
    ratings += right.vals[partner] - 1
    return cells, ratings


def _packed_stats(stats):
    """The stats two by two (the last alone when odd): each pair is kept in one array."""
    stats = list(stats)
    return [(stats[k], stats[k + 1] if k + 1 < len(stats) else None) for k in range(0, len(stats), 2)]


def _unpacked(packed):
    """The two sums (first, second) held in packed values first + PACK * second (second 0 for a lone sum)."""
    import numpy as np
    second = np.floor(packed / PACK)
    return packed - second * PACK, second


def _packed_term_tables(stats):
    """Per packed pair of stats, the float64 term a co-rated pair adds, indexed by its ratings
    10 * (x - 1) + (y - 1): the first stat's term plus PACK times the second's."""
    import numpy as np
    x, y = np.repeat(np.arange(1.0, 11.0), 10), np.tile(np.arange(1.0, 11.0), 10)
    return [PAIR_TERMS[first](x, y) + (PAIR_TERMS[second](x, y) * PACK if second else 0)
            for first, second in _packed_stats(stats)]


def _pair_batches(left, right, diagonal, max_pairs):
    """The batch's users in consecutive runs of at most max_pairs co-rated pairs (a heavier user alone)."""
    import numpy as np
    pairs = left.lengths * (left.lengths - 1) // 2 if diagonal else left.lengths * right.lengths
    ends = np.cumsum(pairs)
    first = 0
    while first < len(pairs):
        base = ends[first - 1] if first else 0
        end = max(int(np.searchsorted(ends, base + max_pairs, side="right")), first + 1)
        part = _user_range(left, first, end)
        yield part, (part if diagonal else _user_range(right, first, end))
        first = end


def _user_ratings(movies, letters, index):
    """UserRatings of one side from each user's 'movie movie ...' and letters; new movies join the index
    in their order of arrival."""
    import numpy as np
    lengths = np.fromiter(map(len, letters), dtype=np.int64, count=len(letters))
    tokens = " ".join(filter(None, movies)).split(" ") if lengths.any() else []
    new = [movie for movie in dict.fromkeys(tokens) if movie not in index]
    index.update(zip(new, range(len(index), len(index) + len(new))))
    cols = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    vals = np.frombuffer("".join(letters).encode("ascii"), dtype=np.uint8) - RATING_LETTER_BASE
    return UserRatings(lengths, cols, vals)


def _rows_of(side, chosen):
    """The UserRatings of the chosen users (a boolean mask) of a side."""
    import numpy as np
    ratings = np.repeat(chosen, side.lengths)
    return UserRatings(side.lengths[chosen], side.cols[ratings], side.vals[ratings])


def _user_range(side, first, end):
    """The UserRatings of users first..end-1 of a side."""
    start, stop = int(side.lengths[:first].sum()), int(side.lengths[:end].sum())
    return UserRatings(side.lengths[first:end], side.cols[start:stop], side.vals[start:stop])


def _joined_ratings(parts):
    import numpy as np
    return UserRatings(*(np.concatenate(column) for column in zip(*parts)))


def _grown(array, shape):
    """`array` in the first rows and columns of a zero array of `shape` (itself if it has that shape)."""
    import numpy as np
    if array.shape == tuple(shape):
        return array
    grown = np.zeros(shape)
    grown[tuple(slice(0, size) for size in array.shape)] = array
    return grown


def _dense_matrices(side, columns):
    """Dense users x columns float32 matrices of a batch's doubled ratings and of 0/1 rated."""
    import numpy as np
    users = np.repeat(np.arange(len(side.lengths)), side.lengths)
    rated = np.zeros((len(side.lengths), columns), dtype=np.float32)
    doubled = np.zeros_like(rated)
    rated[users, side.cols] = 1
    doubled[users, side.cols] = side.vals
    return doubled, rated


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


def kept_neighbours(accumulator, rule, counters):
    """(movie, its kept neighbours in the accumulator's block pair as NEIGHBOUR_SEPARATOR-joined
    'movie score co_raters' entries), both directions of each pair the PairRule keeps: a row's movie as
    soon as its slice is scored, a column's movie when HELD_NEIGHBOURS entries wait or the block pair is
    done. Counts the candidate and kept pairs in counters."""
    movies_a, movies_b = accumulator.movies_a, accumulator.movies_b
    held, held_count = {}, 0
    # Scored a slice of rows at a time, so the temporaries stay small next to the sums.
    for first_row in range(0, len(movies_a), SCORING_ROWS):
        columns = _kept_pairs_of_slice(accumulator, rule, first_row, counters)
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
            yield from _joined(held)
            held, held_count = {}, 0
    yield from _joined(held)


def _kept_pairs_of_slice(accumulator, rule, first_row, counters):
    """Rows, columns, scores and co-raters (lists) of the kept pairs of SCORING_ROWS rows from first_row."""
    i, j = accumulator.candidate_pairs(rule.min_co_ratings, first_row, first_row + SCORING_ROWS)
    sums = accumulator.pair_sums(i, j)
    scores = similarity_scores(rule.metric, sums)
    kept = scores > rule.min_score
    counters["pairs: over min co-ratings"] += len(i)
    counters["pairs: kept"] += int(kept.sum())
    return i[kept].tolist(), j[kept].tolist(), scores[kept].tolist(), sums["n"][kept].tolist()


def _joined(held):
    for movie, entries in held.items():
        yield movie, NEIGHBOUR_SEPARATOR.join(entries)


# --- stage 3: titles, each movie's neighbours ranked ------------------------------------------------
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
    fields = " ".join(NEIGHBOUR_SEPARATOR.join(values).split(NEIGHBOUR_SEPARATOR)).split(" ")
    neighbours = list(zip(fields[0::3], fields[1::3], fields[2::3]))
    try:
        order = _numeric_order(fields[0::3], fields[1::3])
    except (ValueError, OverflowError):  # an id that is not an int64: sorted one entry at a time
        return sorted(neighbours, key=_neighbour_order)
    return [neighbours[number] for number in order]


def _numeric_order(movies, scores):
    """Positions by score descending, then by movie id; ValueError or OverflowError for an id that is not an
    int64."""
    import numpy as np
    ids = np.fromiter(map(int, movies), dtype=np.int64, count=len(movies))
    descending = -np.fromiter(map(float, scores), dtype=np.float64, count=len(scores))
    return np.lexsort((ids, descending)).tolist()


def _neighbour_order(neighbour):
    movie, score, _ = neighbour
    return (-float(score), 0, int(movie), "") if movie.isdigit() else (-float(score), 1, 0, movie)


class TitledIds(dict):
    """'"id", "title"' (or null) of each movie, JSON-encoded once: the stage 3 lines' movies."""

    def __init__(self, titles):
        super().__init__()
        self.titles = titles

    def __missing__(self, movie):
        encoded = self[movie] = f"{json.dumps(movie)}, {json.dumps(self.titles.get(movie))}"
        return encoded


# --- the command line's account of a run -----------------------------------------------------------
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


def failed_task_error(runner, failure, errors):
    """The error, one of `errors` (exception classes), that ended the task a failed step blames, rebuilt
    from the last line of the task's stderr that names one; None if no line does or the failure names no
    task. Only mrjob's local runner names the task (its failure's task_type, step_num and task_num) and
    keeps its stderr where runner._task_stderr_path says (mrjob 0.7, the version the nodes install).
    """
    task = tuple(getattr(failure, field, None) for field in ("task_type", "step_num", "task_num"))
    if None in task:
        return None
    try:
        with open(runner._task_stderr_path(*task), errors="replace") as stderr:
            lines = stderr.read().splitlines()
    except (AttributeError, OSError):
        return None
    by_name = {error.__name__: error for error in errors}
    for line in reversed(lines):
        name, separator, message = line.partition(": ")
        error = by_name.get(name.rpartition(".")[2]) if separator else None
        if error:
            return error(message)
    return None
