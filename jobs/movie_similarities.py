"""Similar movies from MovieLens ratings in three MapReduce stages, exact, on Hadoop streaming.

Usage: python jobs/movie_similarities.py [-r inline|local|hadoop|emr] --items MOVIES RATINGS...
Its rules and math are jobs/similarity_kernel.py's, shipped beside it.

1. group ratings by user (and count the pair work W = sum over users of n_u^2);
2. split each user's ratings into movie blocks and compute, per pair of blocks, the pair
   statistics of every movie pair co-rated by enough users and its similarity (each
   unordered pair is computed exactly once and nothing per pair is shuffled): heavy raters'
   rows by dense matrix products over batches of users, light raters' by summing their
   co-rated pairs directly, each row as its density says, to the same integer sums; a
   mapper writes each block pair's rows in batches; each block pair's key is salted so that
   Hadoop's HashPartitioner sends it to the reduce task its route names (dealt in turn, or
   from a --block-plan measured on the data), and each reduce task counts its work; both
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
  stage 2 mapper:  O(m)    one user's ratings and their block split, the plan's O(M) blocks,
                           and up to ROW_BATCH_BYTES (64 KB) of rows per block pair
  stage 2 reducer: 12.5*(S+2)*B^2 + 20*C*B + 8*(S+5)*256*B + 64*C*r + 100*(256*B + 200000)
                   bytes: the block pair's sums, two to a float64 array (25% growth headroom,
                   one more array while growing or one float32 product), with a sparse batch of
                   at most B^2/4 co-rated pairs and the rows waiting for it (about 36 bytes a
                   pair, 42 for pearson); a batch's dense matrices; one 256-row slice of pairs
                   being scored; one chunk of users' ratings, r = min(m, 2*B) of them a user (a
                   row holds only the movies of the pair's two blocks); and the kept neighbours
                   waiting to be written (at most HELD_NEIGHBOURS plus one slice's, about 100
                   bytes each). With at most PACKED_USERS (671,088) users in a block pair, as
                   in every MovieLens release; beyond, 12.5*S*B^2 more (the sums unpacked)
  stage 3 reducer: O(M)    titles, one movie's neighbours
e.g. ml-1m (M=3,706, m=2,314), G=4 (B about 960), C=1024, cosine: at most 277 MB;
ml-25m (M=59,047, m=32,202), G=22 (B about 2,700), cosine: at most 1.1 GB.
The pipeline keeps B <= 2,800 (movielens_emr.engine.similarity.job.MAX_BLOCK_MOVIES): ml-25m
(M=59,047) gets G >= 22 blocks, and a stage 2 reducer stays under 1.4 GB even for pearson at B = 2,800.
"""
import codecs
import json
import logging
import math
import os
import sys
from collections import Counter

# One BLAS thread per task: parallelism comes from tasks running side by side, as the
# scheduler places them; threads inside each task would only compete for the same cores.
for _blas_threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_threads, "1")
# mrjob imports distutils; setuptools' replacement of it costs every task process 0.25 s
# of start-up, the stdlib's (still in Python <= 3.11, which mrjob needs) almost nothing.
os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
# The kernel is imported from beside this file. Python puts this file's folder on sys.path with its
# symlinks resolved; a Hadoop task runs it from its working folder, where each -files entry is a link
# into a cache folder of its own (YARN's localized files), so the kernel is beside the link, not its
# target: the folder the file was run from, as named, goes on sys.path too (last: it shadows nothing).
_JOB_FOLDER = os.path.dirname(os.path.abspath(__file__))
if _JOB_FOLDER not in sys.path:
    sys.path.append(_JOB_FOLDER)

from mrjob.compat import jobconf_from_env  # noqa: E402
from mrjob.job import MRJob  # noqa: E402
from mrjob.protocol import BytesValueProtocol, JSONProtocol, RawProtocol  # noqa: E402
from mrjob.step import MRStep, StepFailedException  # noqa: E402
from similarity_kernel import (  # noqa: E402
    INPUT_QUALITY_KEY,
    MAX_TASK_WORK_COUNTERS,
    METRIC_STATS,
    METRICS,
    PAIR_WORK_COUNTER,
    TASK_WORK_GROUP,
    USER_BUFFER,
    WORK_GROUP,
    BadRatingLine,
    BlockAccumulator,
    PairRule,
    RowBatches,
    TitledIds,
    block_pair_of,
    block_rows,
    excess_bad_lines,
    failed_task_error,
    in_sample,
    kept_neighbours,
    latest_ratings,
    load_block_plan,
    open_movies_file,
    parse_rating_line,
    rank_neighbours,
    rating_token,
    read_titles,
    routed_keys,
    run_summary,
    user_ratings_record,
)

log = logging.getLogger(__name__)


# The errors a run of this job ends with on purpose are the job's own, declared here (the kernel says why):
# a task's traceback names them as this script's, `TooManyBadLines: ...`, and the local target raises again
# those a failed task's stderr names that this module defines.
class TooManyBadLines(RuntimeError):
    """A map task saw more bad lines than --max-bad-fraction allows."""


class ItemsFileUnusable(ValueError):
    """The --items file cannot be read: found when the run starts, before any stage."""


# The errors a task of this job raises on purpose: the command line ends a failed run with the task's own.
TASK_ERRORS = (TooManyBadLines,)


class PreformattedJSONProtocol(JSONProtocol):
    """mrjob's JSON protocol for reading; writes keys and values that are JSON text already.

    The final reducer formats each line itself, each movie's id and title encoded once (with
    json.dumps' defaults, as JSONProtocol writes them) rather than once per neighbour line, and
    writes all of a movie's lines at once: a None key's value is those lines, written as they are.
    """

    def write(self, key, value):
        if key is None:
            return value.encode("utf-8")
        return f"{key}\t{value}".encode("utf-8")


class MRMovieSimilarities(MRJob):
    """Movie pairs whose ratings agree, with their similarity and number of co-raters."""

    INPUT_PROTOCOL = BytesValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = PreformattedJSONProtocol
    # Shipped beside the job file by mrjob's own runners (-r hadoop, -r emr) into its tasks' working folder.
    FILES = ["similarity_kernel.py"]

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
            help="stage 2 users parsed at once, and per dense matrix product, at most 65536 (default 1024)")

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
                   mapper_final=self.mapper_final_flush_rows,
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
        self._user_tokens.setdefault(user, []).append(rating_token(movie, doubled, timestamp))
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
            too_many = excess_bad_lines(token_lists, self.options.max_bad_fraction)
            if too_many:
                raise TooManyBadLines(too_many)
            return
        ratings, duplicates = latest_ratings(" ".join(token_lists).split(" "))
        if duplicates:
            self.increment_counter("input", "duplicate ratings dropped (latest kept)", duplicates)
        self._counters[f"{WORK_GROUP}: {PAIR_WORK_COUNTER}"] += len(ratings) ** 2
        yield user, user_ratings_record(ratings)

    # Stage 2: pair statistics and similarity, one reduce key per block pair.
    def mapper_init_blocks(self):
        plan = load_block_plan(self.options.block_plan, self.options.movie_blocks)
        self._block_of = dict(plan.get("blocks", {}))
        reduce_tasks = self.options.reduce_tasks or int(jobconf_from_env("mapreduce.job.reduces", 0) or 0)
        self._keys = routed_keys(plan, self.options.movie_blocks, reduce_tasks)
        self._row_batches = RowBatches()
        self._needs_marginals = self.options.metric == "jaccard"

    def mapper_split_user_into_blocks(self, _, ratings):
        """(user_id, 'movies|letters') -> ('a,b[@salt]', rows 'movies_a|letters_a|movies_b|letters_b'
        joined by '|'), each key's rows written ROW_BATCH_BYTES at a time"""
        batches, keys = self._row_batches, self._keys
        rows = block_rows(ratings, self._block_of, self.options.movie_blocks, self._needs_marginals)
        for pair, row in rows:
            record = batches.add(keys.get(pair, pair), row)
            if record:
                yield record

    def mapper_final_flush_rows(self):
        yield from self._row_batches.drain()

    def reducer_init_counters(self):
        self._counters = Counter()
        self._task_work = 0

    def reducer_compute_block_similarities(self, key, row_batches):
        """('a,b[@salt]', batches of user rows) -> (movie_id, 'similar_movie_id score co_raters;...'), both
        directions of each kept pair"""
        a, b = block_pair_of(key)
        accumulator = BlockAccumulator(METRIC_STATS[self.options.metric], diagonal=a == b)
        self._task_work += accumulator.add_user_rows(row_batches, self.options.user_chunk)
        rule = PairRule(self.options.metric, self.options.min_co_ratings, self.options.min_score)
        yield from kept_neighbours(accumulator, rule, self._counters)

    def reducer_final_report_work(self):
        """This task's work as a counter of its own, even when 0: the skew's mean counts idle tasks."""
        self.flush_counters()
        task = int(jobconf_from_env("mapreduce.task.partition", 0) or 0)
        if task < MAX_TASK_WORK_COUNTERS:
            self.increment_counter(TASK_WORK_GROUP, f"reduce task {task:03d}", self._task_work)

    # Stage 3: titles, neighbours ranked by score.
    def reducer_init_load_titles(self):
        self._counters = Counter()
        # Every stage 3 reducer reads the whole movies file; only the first reports what it found
        # there, so each title counter counts once, however many reducers the stage has.
        first_reducer = jobconf_from_env("mapreduce.task.partition", "0") == "0"
        title_counters = self._counters if first_reducer else Counter()
        self._titles = read_titles(self.options.items, title_counters) if self.options.items else {}
        self._titled_ids = TitledIds(self._titles)

    def reducer_rank_neighbours(self, movie, values):
        """(movie, 'similar_id score co_raters' values) -> the movie's output lines as one record, best
        neighbour first, each key [movie_id, title] and value [similar_id, similar_title, score, co_raters]
        as JSON text, tab-separated: one write a movie rather than one a pair"""
        if movie not in self._titles:
            self._counters["output: movies without a title"] += 1
        titled = self._titled_ids
        key = f"[{titled[movie]}]"
        neighbours = rank_neighbours(values)
        self._counters["output: ordered pairs"] += len(neighbours)
        yield None, "\n".join([f"{key}\t[{titled[other]}, {score}, {co_raters}]"
                               for other, score, co_raters in neighbours])

    def make_runner(self):
        """mrjob's runner, once --items is found readable: a missing movies file fails before any stage."""
        check_items_file(self.options.items)
        return super().make_runner()

    # Command line: a summary after the run, so an empty or mostly-skipped input is obvious; when
    # the run fails on purpose, the summary of what was read, then the reason, as the last lines.
    def run_job(self):
        """mrjob's run_job, with the summary; the task's own error is read before the runner cleans up."""
        self.set_up_logging(quiet=self.options.quiet, verbose=self.options.verbose,
                            stream=codecs.getwriter("utf_8")(self.stderr))
        try:
            with self.make_runner() as runner:
                failure = self._run_and_write_output(runner)
        except ItemsFileUnusable as error:
            log.error("%s: %s", type(error).__name__, error)
            sys.exit(1)
        if failure is not None:
            log.error(run_summary(runner.counters(), failure=failure))
            sys.exit(1)
        log.info(run_summary(runner.counters()))

    def _run_and_write_output(self, runner):
        """Run the job and write its output as mrjob's run_job does; the job's own error that failed it,
        if one did (a task's, raised as it is by the inline runner, read from its stderr otherwise)."""
        try:
            runner.run()
        except TASK_ERRORS as error:
            return error
        except StepFailedException as failure:
            error = failed_task_error(runner, failure, TASK_ERRORS)
            if error is None:
                log.error(str(failure))
                sys.exit(1)
            return error
        if self._should_cat_output():
            for chunk in runner.cat_output():
                self.stdout.write(chunk)
            self.stdout.flush()
        return None


def check_items_file(path):
    """Raise ItemsFileUnusable unless the local movies file `path`, if any, opens; URIs are left to mrjob."""
    if not path or "://" in path:
        return
    try:
        open_movies_file(path).close()
    except OSError as error:
        raise ItemsFileUnusable(f"--items {path}: {error.strerror or error}") from None


if __name__ == "__main__":
    MRMovieSimilarities.run()
