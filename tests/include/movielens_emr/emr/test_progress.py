"""The stage wait's progress lines: one when a stage starts, one when it ends, nothing while it runs on."""
import datetime

from movielens_emr.emr.progress import progress_lines

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


def step(number, state, start=None, end=None):
    timeline = {key: T0 + datetime.timedelta(seconds=value)
                for key, value in (("StartDateTime", start), ("EndDateTime", end)) if value is not None}
    return {"Id": f"s-{number}", "Name": f"stage {number} of 2: stage {number} name [manual__1]",
            "Status": {"State": state, "Timeline": timeline}}


def test_a_stage_is_logged_when_it_starts_and_when_it_ends():
    seen = {}
    assert progress_lines(seen, [step(1, "PENDING"), step(2, "PENDING")], T0) == [
        "stage 1 of 2: stage 1 name: PENDING", "stage 2 of 2: stage 2 name: PENDING"]
    now = T0 + datetime.timedelta(seconds=30)
    assert progress_lines(seen, [step(1, "RUNNING", start=5), step(2, "PENDING")], now) == [
        "stage 1 of 2: stage 1 name: RUNNING, started 25 s ago"]
    assert progress_lines(seen, [step(1, "RUNNING", start=5), step(2, "PENDING")], now) == []
    later = T0 + datetime.timedelta(seconds=400)
    assert progress_lines(seen, [step(1, "COMPLETED", 5, 130), step(2, "RUNNING", start=131)], later) == [
        "stage 1 of 2: stage 1 name: COMPLETED in 2 m 5 s",
        "stage 2 of 2: stage 2 name: RUNNING, started 4 m 29 s ago"]


def test_a_failed_stage_says_so_with_its_time():
    assert progress_lines({"s-1": "RUNNING"}, [step(1, "FAILED", 0, 61)], T0) == [
        "stage 1 of 2: stage 1 name: FAILED in 1 m 1 s"]
