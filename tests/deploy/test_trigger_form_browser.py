"""A user's journey in a real browser (Playwright driving Debian's Chromium) against the services of
scripts/airflow_services.sh: the plan before the trigger, a local ml-100k run from the trigger form's own
fields, its extra link to its page (stage chart, neighbours, downloads), and the reason of a run that failed
on bad data; then out-of-range node counts. Each step leaves a screenshot in test-artifacts/."""
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from movielens_emr.config.params import SECURITY_CONFIGURATION_PATTERN
from movielens_emr.data.storage import run_folder

from tests.conftest import MOVIELENS, REPO
from tests.deploy.test_airflow_services import api, running_services, wait_for_dag

DAG_ID = "movielens_similarity"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
# node_count's default is 4; an EMR-only field set on the local target must do no harm.
CHOSEN = {"node_count": 3, "target": "local", "dataset": "ml-100k", "security_configuration": "at-rest-kms"}
# The services' source folder holds the real ml-100k, and as ml-latest-small a release whose ratings are
# mostly not ratings (as tests/dags/test_fault_matrix.py makes one): a run of it fails in the job.
BAD_DATASET = "ml-latest-small"
BAD_DATA_REASON = re.compile(r"TooManyBadLines: 30 of 50 ratings lines in \S+ are bad")
LINK_NAME = "Results and metrics"
MAX_NODE_COUNT = 20  # the Variable movielens_max_node_count is not set
FORM_VIEWPORT = {"width": 1400, "height": 1900}  # the whole trigger form in one screenshot
RUN_PAGE_VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 600
TERMINAL_STATES = {"success", "failed"}


def sync_playwright():
    """Playwright's entry point; the test fails, never skips, when the browser set-up is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} (Debian's chromium) is missing: run scripts/install_browser.sh")
    try:
        from playwright.sync_api import sync_playwright as entry_point
    except ImportError:
        pytest.fail("the playwright package is missing: run scripts/install_browser.sh")
    return entry_point()


def source_folder(folder):
    """MOVIELENS_SOURCE_DIR for the services: the real ml-100k, and a BAD_DATASET of 30 bad lines in 50."""
    folder.mkdir()
    (folder / "ml-100k").symlink_to(MOVIELENS / "ml-100k")
    bad = folder / BAD_DATASET
    bad.mkdir()
    shutil.copy(MOVIELENS / BAD_DATASET / "movies.csv", bad / "movies.csv")
    good = [f"{user},1,4.0,964982703" for user in range(1, 21)]
    (bad / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(
        good + [f"{user};1;4.0" for user in range(30)]) + "\n")
    return folder


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-browser")
    with running_services(home, MOVIELENS_STORAGE_ROOT=str(home / "storage"),
                          MOVIELENS_SOURCE_DIR=str(source_folder(home / "source"))) as services:
        wait_for_dag(services, DAG_ID)
        status, dag = api(services, "PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        assert (status, dag["is_paused"]) == (200, False), dag
        yield services


@pytest.fixture(scope="module")
def bad_data_run(services):
    """A local run of BAD_DATASET, triggered by the API; it runs beside the form's run."""
    status, run = api(services, "POST", f"/dags/{DAG_ID}/dagRuns", {
        "logical_date": None, "conf": {"target": "local", "dataset": BAD_DATASET, "node_count": 1}})
    assert status == 200, run
    return run["dag_run_id"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    context = browser.new_context(viewport=FORM_VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_trigger_form(page, services):
    page.goto(f"{services.url}/dags/{DAG_ID}")
    # The DAG list behind has Trigger buttons with the same test id: wait for the DAG's own page.
    page.get_by_role("heading", name="Latest Dag Version").wait_for()
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    node_count(dialog).wait_for()
    return dialog


def node_count(dialog):
    return dialog.get_by_role("spinbutton", name="Node count")


def type_node_count(dialog, typed):
    """Types into the field and leaves it: the form commits (and clamps) a number on blur."""
    node_count(dialog).fill(typed)
    node_count(dialog).press("Tab")


def choose(page, dialog, title, option):
    dialog.get_by_role("combobox", name=title).click()
    page.get_by_role("option", name=option, exact=True).click()


def type_text(dialog, param, typed):
    # The form's text boxes are not labelled for assistive technology: found by the id it gives them.
    dialog.locator(f"#element_{param}").fill(typed)


def submit(page, dialog):
    """Clicks Trigger; the API's response to the form's POST of the new run."""
    def is_trigger(response):
        return response.request.method == "POST" and response.url.endswith(f"/{DAG_ID}/dagRuns")

    with page.expect_response(is_trigger) as sent:
        dialog.get_by_test_id("trigger-dag-submit").click()
    return sent.value


def run_count(services):
    status, body = api(services, "GET", f"/dags/{DAG_ID}/dagRuns")
    assert status == 200, body
    return body["total_entries"]


@pytest.fixture(scope="module")
def form_run(page, services):
    """The run triggered from the form's own fields: the POST's response status and the new run's id."""
    dialog = open_trigger_form(page, services)
    type_node_count(dialog, str(CHOSEN["node_count"]))
    choose(page, dialog, "Target", CHOSEN["target"])
    choose(page, dialog, "Dataset", CHOSEN["dataset"])
    type_text(dialog, "security_configuration", CHOSEN["security_configuration"])
    screenshot(page, "trigger-form.png")
    response = submit(page, dialog)
    return {"status": response.status, "request": response.request.post_data_json,
            "run_id": response.json()["dag_run_id"]}


def ended_run(services, run_id):
    """The run, by the API, once it has ended."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status, run = api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run.get("state") in TERMINAL_STATES:
            return run
        time.sleep(3)
    raise AssertionError(f"{run_id} did not end within {RUN_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def finished_run(form_run, services):
    """The form's run, once it has ended."""
    return ended_run(services, form_run["run_id"])


def task_states(services, run_id):
    _, body = api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
    return {task["task_id"]: task["state"] for task in body["task_instances"]}


def test_the_plan_with_empty_deadline_and_budget_answers_in_the_page(page, services, bad_data_run):
    page.goto(f"{services.url}/movielens/")
    plan = page.locator("#plan")
    plan.get_by_label("Dataset to plan for").select_option(CHOSEN["dataset"])
    assert plan.get_by_label("Target").input_value() == "local"  # the deployment's own target
    assert plan.get_by_label("Deadline in minutes").input_value() == ""
    assert plan.get_by_label("Budget in USD").input_value() == ""
    plan.get_by_role("button", name="Plan").click()
    page.wait_for_url("**deadline_minutes=&budget_usd=*")
    answer = page.locator("#plan .needs-history")
    answer.wait_for()
    screenshot(page, "journey-1-plan.png")
    # No run has succeeded yet: the page says so, and which runs would let the history answer.
    assert answer.inner_text().startswith("No plan yet: the run history cannot answer")
    assert "Runs that would let it answer" in answer.inner_text()
    assert page.get_by_role("heading", name="MovieLens benchmarks").is_visible()


def test_form_sends_the_chosen_values(form_run):
    assert form_run["status"] == 200
    assert {name: form_run["request"]["conf"][name] for name in CHOSEN} == CHOSEN


def test_run_from_the_form_succeeds_in_the_ui(form_run, page, services):
    run_id = form_run["run_id"]
    page.set_viewport_size(RUN_PAGE_VIEWPORT)
    try:
        page.goto(f"{services.url}/dags/{DAG_ID}/runs/{run_id}")
        heading = page.get_by_role("heading", name=run_id, exact=True)
        badge = heading.locator("xpath=..").get_by_test_id("state-badge")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # The run page refreshes itself while the run is active.
        while badge.inner_text().strip() not in ("Success", "Failed") and time.monotonic() < deadline:
            page.wait_for_timeout(2_000)
        page.wait_for_timeout(1_000)  # let the task list catch up with the badge before the screenshot
        screenshot(page, "trigger-form-run.png")
        assert badge.inner_text().strip() == "Success", task_states(services, run_id)
    finally:
        page.set_viewport_size(FORM_VIEWPORT)


def test_run_conf_holds_the_chosen_node_count(finished_run):
    assert finished_run["state"] == "success"
    assert {name: finished_run["conf"][name] for name in CHOSEN} == CHOSEN


def test_run_metrics_record_the_chosen_node_count(finished_run, services):
    storage_root = Path(services.env["MOVIELENS_STORAGE_ROOT"])
    metrics = json.loads((storage_root / run_folder(finished_run["dag_run_id"]) / "metrics.json").read_text())
    assert {name: metrics[name] for name in CHOSEN} == CHOSEN
    assert metrics["cluster_security_configuration"] is None  # no cluster on the local target


def open_extra_link(page, services, run_id, task_id, shown_as):
    """The task's page in the UI, its Details tab, then its extra link to the run's page, as a user clicks;
    the task's page with the link is saved as the screenshot `shown_as`."""
    page.goto(f"{services.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{task_id}")
    page.get_by_role("link", name="Details", exact=True).click()  # the task page's tabs are links
    link = page.get_by_role("link", name=LINK_NAME)
    link.wait_for()
    screenshot(page, shown_as)
    link.click()
    page.wait_for_url(f"**/movielens/runs/{quote(run_id, safe='')}")
    page.get_by_role("heading", name=f"Run {run_id}", exact=True).wait_for()


def test_the_extra_link_opens_the_runs_page_with_its_stage_chart_and_neighbours(finished_run, page, services):
    run_id = finished_run["dag_run_id"]
    open_extra_link(page, services, run_id, "record_metrics", "journey-2-extra-link.png")
    chart = page.locator("#stages img")
    chart.wait_for()
    page.wait_for_load_state("networkidle")
    screenshot(page, "journey-3-run-page.png")
    assert chart.evaluate("image => image.complete && image.naturalWidth > 0")
    assert chart.get_attribute("alt").startswith("Stage times: 1. group ratings by user")
    neighbours = page.locator("#neighbours article.movie")
    assert neighbours.count() == 10
    assert neighbours.first.get_by_role("heading").inner_text() == "Toy Story (1995) movie 1"
    assert neighbours.first.locator("tbody tr").count() == 10
    assert "Why it failed" not in page.content()


def test_the_runs_page_looks_titles_up_and_downloads_its_files(finished_run, page, services):
    run_id = finished_run["dag_run_id"]
    page.goto(f"{services.url}/movielens/runs/{quote(run_id, safe='')}")
    page.get_by_label("Movie title").fill("star wars")
    page.get_by_role("button", name="Find").click()
    page.locator("#neighbours article.movie").first.wait_for()
    assert page.locator("#neighbours h3").first.inner_text() == "Star Wars (1977) movie 50"
    screenshot(page, "journey-4-title-lookup.png")
    folder = Path(services.env["MOVIELENS_STORAGE_ROOT"]) / run_folder(run_id)
    for name, stored in (("download metrics.json", "metrics.json"),
                         ("similarities.csv", "results/similarities.csv")):
        with page.expect_download() as download:
            page.get_by_role("link", name=name).click()
        assert Path(download.value.path()).read_bytes() == (folder / stored).read_bytes(), name


def test_the_form_runs_other_result_task_links_to_the_same_page(finished_run, services):
    status, links = api(services, "GET", f"/dags/{DAG_ID}/dagRuns/{finished_run['dag_run_id']}"
                                         "/taskInstances/collect_results/links")
    assert (status, links["extra_links"]) == (
        200, {LINK_NAME: f"movielens/runs/{quote(finished_run['dag_run_id'], safe='')}"})


def test_a_run_failed_on_bad_data_says_the_jobs_reason(bad_data_run, page, services):
    assert ended_run(services, bad_data_run)["state"] == "failed"
    # The history table says why, and links the run to its page.
    page.goto(f"{services.url}/movielens/")
    row = page.locator(f'tr[data-run-id="{bad_data_run}"]')
    reason = row.locator(".reason")
    # Cut to fit the table, whole in its tooltip.
    assert reason.inner_text().startswith("TooManyBadLines: 30 of 50 ratings lines in ")
    assert BAD_DATA_REASON.match(reason.get_attribute("title"))
    screenshot(page, "journey-5-history.png")
    row.get_by_role("link", name=bad_data_run).click()
    headline = page.locator("#failure .headline")
    headline.wait_for()
    screenshot(page, "journey-6-failed-run.png")
    assert BAD_DATA_REASON.match(headline.inner_text()), headline.inner_text()
    assert "Task run_local_job failed" in page.locator("#failure").inner_text()
    # collect_results never ran (upstream_failed), and still links to the page that says why.
    open_extra_link(page, services, bad_data_run, "collect_results", "journey-7-failed-run-extra-link.png")
    assert BAD_DATA_REASON.match(page.locator("#failure .headline").inner_text())


@pytest.mark.parametrize("typed, clamped", [("0", "1"), ("-3", "1"), ("25", str(MAX_NODE_COUNT))])
def test_form_clamps_an_out_of_range_node_count_before_sending_it(page, services, typed, clamped):
    dialog = open_trigger_form(page, services)
    assert (node_count(dialog).get_attribute("aria-valuemin"),
            node_count(dialog).get_attribute("aria-valuemax")) == ("1", str(MAX_NODE_COUNT))
    type_node_count(dialog, typed)
    assert node_count(dialog).input_value() == clamped
    # What the form would send, caught before it reaches the API: no run is made.
    sent = []

    def catch_trigger(route):
        if route.request.method != "POST":
            return route.continue_()
        sent.append(route.request.post_data_json)
        return route.fulfill(status=400, json={"detail": "caught by the test"})

    page.route(f"**/dags/{DAG_ID}/dagRuns", catch_trigger)
    try:
        dialog.get_by_test_id("trigger-dag-submit").click()
        page.wait_for_timeout(1_000)
    finally:
        page.unroute(f"**/dags/{DAG_ID}/dagRuns")
    assert [body["conf"]["node_count"] for body in sent] == [int(clamped)]


def test_form_shows_the_apis_refusal_of_a_non_integer_node_count(page, services):
    before = run_count(services)
    dialog = open_trigger_form(page, services)
    type_node_count(dialog, "3.5")
    assert node_count(dialog).input_value() == "3.5"
    response = submit(page, dialog)
    assert response.status == 400
    assert "node_count: 3.5 is not of type 'integer'" in response.json()["detail"]
    dialog.get_by_text("Invalid input for param node_count: 3.5 is not of type 'integer'").wait_for()
    screenshot(page, "trigger-form-non-integer.png")
    assert run_count(services) == before


@pytest.mark.parametrize("value, message", [
    (0, "0 is less than the minimum of 1"),
    (MAX_NODE_COUNT + 1, f"{MAX_NODE_COUNT + 1} is greater than the maximum of {MAX_NODE_COUNT}"),
    # null is allowed: an empty node count is the sizing advisor's to choose
    (3.5, "3.5 is not of type 'integer', 'null'"),
    ("4", "'4' is not of type 'integer', 'null'"),
])
def test_api_refuses_a_node_count_outside_the_schema(services, value, message):
    before = run_count(services)
    status, body = api(services, "POST", f"/dags/{DAG_ID}/dagRuns",
                       {"logical_date": None, "conf": {**CHOSEN, "node_count": value}})
    assert (status, body["detail"].splitlines()[0]) == (400, f"Invalid input for param node_count: {message}")
    assert run_count(services) == before


@pytest.mark.parametrize("name", ["at rest", "arn:aws:elasticmapreduce:us-east-1:123456789012:x"])
def test_api_refuses_a_bad_security_configuration_name(services, name):
    before = run_count(services)
    status, body = api(services, "POST", f"/dags/{DAG_ID}/dagRuns",
                       {"logical_date": None, "conf": {**CHOSEN, "security_configuration": name}})
    assert (status, body["detail"].splitlines()[0]) == (
        400, f"Invalid input for param security_configuration: {name!r} does not match "
             f"{SECURITY_CONFIGURATION_PATTERN!r}")
    assert run_count(services) == before
