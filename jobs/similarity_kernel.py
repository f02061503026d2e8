"""The movie similarity job's rules and math as plain functions, shipped beside jobs/movie_similarities.py.

The job imports it by name from its own folder (see the job file's header); the pipeline imports it the
same way to apply the same parsing and routing (movielens_emr.engine.similarity.job.job_kernel). Python
3.9 and the standard library (numpy inside the functions of stage 2), as on the EMR nodes.
"""
import bz2
import csv
import gzip
import json
import re
import zlib
from collections import Counter, namedtuple

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

    def add_user_rows(self, rows, chunk_users):
        """Add every user row of rows (an iterable), chunk_users at a time; their work (add_users)."""
        work, chunk = 0, []
        for row in rows:
            chunk.append(row)
            if len(chunk) == chunk_users:
                work += self.add_users(chunk)
                chunk = []
        if chunk:
            work += self.add_users(chunk)
        return work

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
    neighbours = [entry.split(" ") for value in values for entry in value.split(NEIGHBOUR_SEPARATOR)]
    neighbours.sort(key=_neighbour_order)
    return neighbours


def _neighbour_order(neighbour):
    movie, score, _ = neighbour
    return (-float(score), 0, int(movie), "") if movie.isdigit() else (-float(score), 1, 0, movie)


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
