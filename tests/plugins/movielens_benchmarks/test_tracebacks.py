"""tracebacks.py: the exceptions a task log ends with, read from the log as Airflow's reader returns it."""
from plugins.movielens_benchmarks.tracebacks import exceptions, first_traceback_tail, log_text, tracebacks

from tests.plugins.movielens_benchmarks.stored import BAD_LINES, FAILED, JOB_OUTPUT, task_log


def test_a_traceback_behind_a_prefix_is_read_without_it():
    [traceback] = tracebacks("\n".join(JOB_OUTPUT))
    assert traceback == ["Traceback (most recent call last):",
                         '  File "movie_similarities.py", line 277, in reducer_group_by_user',
                         "    raise TooManyBadLines(too_many)", BAD_LINES]


def test_a_traceback_cut_short_is_left_out():
    text = "\n".join(["job: Traceback (most recent call last):", 'job:   File "x.py", line 1',
                      "stage 2 of 3 started", "ValueError: x"])
    assert tracebacks(text) == []


def test_the_logged_exception_is_printed_as_python_prints_one():
    text = log_text(task_log(error=FAILED))
    assert text.splitlines()[3:6] == [
        "Traceback (most recent call last):",
        '  File "/repo/include/movielens_emr/local/runner.py", line 72, in run_local_job',
        "LocalJobFailed: the job's process exited with code 1; its last lines:"]


def test_the_jobs_own_exception_comes_first_and_each_once():
    # The job's traceback is in its output and again in the end of LocalJobFailed's message.
    assert exceptions(log_text(task_log(*JOB_OUTPUT, error=FAILED))) == [
        BAD_LINES, "LocalJobFailed: the job's process exited with code 1; its last lines:"]


def test_an_exception_printed_bare_and_with_its_module_counts_once():
    text = "\n".join(["Traceback (most recent call last):", '  File "a.py", line 1, in f', BAD_LINES,
                      "Traceback (most recent call last):", '  File "b.py", line 2, in g',
                      "movie_similarities." + BAD_LINES])
    assert exceptions(text) == [BAD_LINES]


def test_any_class_name_counts_and_a_line_that_names_none_does_not():
    frames = ["Traceback (most recent call last):", '  File "a.py", line 1, in f']
    text = "\n".join([*frames, "ItemsFileUnusable", *frames, '"""'])
    assert exceptions(text) == ["ItemsFileUnusable"]


def test_the_first_tracebacks_tail():
    text = log_text(task_log(*JOB_OUTPUT, error=FAILED))
    assert first_traceback_tail(text, lines=2) == f"    raise TooManyBadLines(too_many)\n{BAD_LINES}"
    assert first_traceback_tail("no traceback here") is None
