"""The benchmark report: its tables, report.md, summary.json and plots from a hand-made document."""
import json

import pytest

from movielens_emr.data.storage import run_folder
from movielens_emr.reporting import benchmark_report as report
from movielens_emr.reporting.benchmark import summarize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARAMS = {"node_counts": [4, 8], "dataset": "ml-1m", "target": "emr", "repetitions": 1,
          "sample_fractions": [1.0], "parallel": False, "member_runs": "trigger", "engine": "similarity",
          "instance_type": "m5.xlarge"}


def member(index, node_count, wall, cluster, provisioning, stages, fraction=1.0, state="success"):
    metrics = {"wall_seconds": wall, "cluster_seconds": cluster, "provisioning_seconds": provisioning,
               "stage_seconds": stages, "overhead_seconds": wall - cluster,
               "node_minutes": node_count * cluster / 60,
               "estimated_cost_usd": round(node_count * cluster / 3600 * 0.24, 4)}
    return {"index": index, "run_id": f"benchmark__b__n{node_count}_f{fraction:g}_r1", "state": state,
            "conf": {"node_count": node_count, "sample_fraction": fraction},
            "metrics": metrics if state == "success" else None,
            "error": None if state == "success" else "movielens_similarity run failed"}


def document(members, params=PARAMS):
    return {"benchmark_run_id": "manual__2026-01-05T00:00:00+00:00", "params": params, "host_cpus": 2,
            **summarize(members), "member_runs": members}


@pytest.fixture
def study():
    """The study's 4 -> 8 nodes: 31 m 8 s -> 18 m 2 s wall, 29 m 33 s -> 16 m 33 s cluster; a failed 16."""
    return document([member(0, 4, 1868.0, 1773.0, 450.0, [120.0, 930.0, 240.0]),
                     member(1, 8, 1082.0, 993.0, 420.0, [90.0, 480.0, 140.0]),
                     member(2, 16, 0, 0, 0, [], state="failed")])


def test_report_folder_is_named_as_the_run_folder():
    folder = report.report_folder("manual__2026-01-05T00:00:00+00:00")
    assert folder == "benchmarks/" + run_folder("manual__2026-01-05T00:00:00+00:00").removeprefix("runs/")
    assert folder.startswith("benchmarks/manual__2026-01-05T00_00_00_00_00--")


def test_summary_table_rows(study):
    rows = report.summary_rows(study["configurations"])
    assert rows[0] == ("4", "100 %", "1/1", "success", "1,868.0", "1,773.0", "450.0", "1,290.0", "95.0",
                       "1.00", "1.00", "1.00", "118.20", "0.4728")
    assert rows[1][:4] == ("8", "100 %", "1/1", "success")
    assert rows[1][9:12] == ("1.73", "1.79", "0.89")  # the study's speedups; efficiency 1.79 / 2
    assert rows[2] == ("16", "100 %", "0/1", "failed", *["-"] * 10)


def test_summary_table_is_markdown(study):
    lines = report.summary_table(study["configurations"]).splitlines()
    assert lines[0] == "| " + " | ".join(report.COLUMNS) + " |"
    assert lines[1].count("---") == len(report.COLUMNS)
    assert len(lines) == 2 + 3


def test_report_states_the_conventions_the_fit_and_the_failure(study):
    text = report.report_markdown({**study, "plots": report.plot_names(study)})
    assert "4 -> 8 nodes at 1.79x gives p = 0.88" in text and "the same two figures give p = 0.97" in text
    # Stages 1290 s on 4 nodes and 710 s on 8: b/8 = 580, so b = 4640, a = 130; p = 4640 / 4770 = 0.97
    # absolute, 1160 / 1290 = 0.90 relative to 4; fixed overhead the median of 578 and 372 s.
    assert ("T(n) = 130.0 + 4,640.0 / n s; **p = 0.90 relative to 4 nodes**, p = 0.97 absolute; residual RMS "
            "0.00 s; fixed overhead (median wall - stages) 475.0 s.") in text
    assert "faster than linear" not in text and "Local target" not in text
    assert "**2 of 3 member runs measured; 1 failed and left out of every median" in text
    failed_row = "| 2 | `benchmark__b__n16_f1_r1` | 16 | 100 % | failed | - | - | {} |"
    assert failed_row.format("movielens_similarity run failed") in text
    assert "![time_vs_nodes.png](time_vs_nodes.png)" in text
    assert "## Input size" not in text and "## Recommendation quality" not in text


def test_the_report_names_the_engine_and_the_instance_type(study):
    text = report.report_markdown({**study, "plots": []})
    assert text.startswith(
        "# movielens_similarity benchmark `manual__2026-01-05T00:00:00+00:00`: the similarity engine\n")
    assert ("movielens_similarity runs with the similarity engine: dataset ml-1m on the emr target "
            "(m5.xlarge nodes); node counts 4, 8;") in text
    local = {**study, "params": {**PARAMS, "engine": "als", "target": "local"}, "plots": []}
    text = report.report_markdown(local)
    assert text.split("\n")[0].endswith("`: the als engine") and "m5.xlarge" not in text
    assert "movielens_similarity runs with the als engine: dataset ml-1m on the local target;" in text


def test_a_document_from_before_the_engine_field_reports_the_similarity_engine(study):
    old = {name: value for name, value in PARAMS.items() if name not in ("engine", "instance_type")}
    files = report.report_files({**study, "params": old})
    assert files["report.md"].decode().split("\n")[0].endswith("`: the similarity engine")
    params = json.loads(files["summary.json"])["params"]
    assert (params["engine"], params["instance_type"]) == ("similarity", "m5.xlarge")


def test_every_plot_title_names_the_engine_dataset_and_target(study):
    document = {**study, "params": {**PARAMS, "engine": "als"}}
    assert report.plot_title(document, "Time vs nodes") == "Time vs nodes\nals engine, ml-1m, emr target"


def scored(entry, als_precision):
    figures = {"precision_at_k": als_precision, "recall_at_k": 0.1294, "ndcg_at_k": 0.1509,
               "map_at_k": 0.0798, "coverage": 0.2885, "k": 10}
    popularity = {"precision_at_k": 0.0715, "recall_at_k": 0.0742, "ndcg_at_k": 0.0905, "map_at_k": 0.0427,
                  "coverage": 0.0447, "k": 10}
    entry["metrics"]["evaluation"] = {"recommenders": {"popularity": popularity, "als": figures}}
    return entry


def test_an_als_sweep_reports_its_recommendation_quality():
    members = [scored(member(0, 1, 60.0, 40.0, 0.0, [40.0]), 0.1134),
               scored(member(1, 2, 50.0, 30.0, 0.0, [30.0]), 0.1140)]
    params = {**PARAMS, "engine": "als", "target": "local", "node_counts": [1, 2]}
    text = report.report_files(document(members, params))["report.md"].decode()
    quality = text.split("## Recommendation quality")[1].split("## Stages")[0]
    assert "| nodes | input | recommender | k | runs scored | P@k | R@k | NDCG@k | MAP@k | coverage |\n" in (
        quality)
    assert "| 1 | 100 % | popularity | 10 | 1/1 | 0.0715 | 0.0742 | 0.0905 | 0.0427 | 0.0447 |" in quality
    assert "| 1 | 100 % | als | 10 | 1/1 | 0.1134 | 0.1294 | 0.1509 | 0.0798 | 0.2885 |" in quality
    assert "| 2 | 100 % | als | 10 | 1/1 | 0.1140 |" in quality
    assert text.index("## Summary") < text.index("## Recommendation quality") < text.index("## Stages")


def test_report_files_hold_the_report_the_summary_and_png_plots(study):
    files = report.report_files(study)
    assert set(files) == {"report.md", "summary.json", "time_vs_nodes.png", "time_breakdown.png",
                          "cost_vs_time.png"}
    for name in ("time_vs_nodes.png", "time_breakdown.png", "cost_vs_time.png"):
        assert files[name].startswith(PNG_SIGNATURE) and len(files[name]) > 10_000, name
    summary = json.loads(files["summary.json"])
    assert summary["plots"] == ["time_vs_nodes.png", "time_breakdown.png", "cost_vs_time.png"]
    assert [row["state"] for row in summary["configurations"]] == ["success", "success", "failed"]
    assert summary["member_runs"][2]["error"] == "movielens_similarity run failed"


def test_sample_fractions_add_the_input_section_and_plot():
    members = [member(0, 2, 80.0, 70.0, 0.0, [10.0, 30.0, 20.0], fraction=0.5),
               member(1, 2, 130.0, 120.0, 0.0, [20.0, 60.0, 30.0], fraction=1.0)]
    params = {**PARAMS, "target": "local", "node_counts": [2], "sample_fractions": [0.5, 1.0]}
    files = report.report_files(document(members, params))
    assert files["time_vs_input.png"].startswith(PNG_SIGNATURE)
    text = files["report.md"].decode()
    assert "Local target: nodes are parallel tasks on 2 CPUs" in text
    assert "- 2 nodes (50 %: 70.0 s, 100 %: 120.0 s): cluster s ~ 20.0 + 100.0 x fraction" in text
    assert "2.00x the input took 1.71x the cluster time" in text
    assert "- Input 50 %: no fit (fewer than two measured node counts)." in text


def test_a_superlinear_fit_is_called_out():
    members = [member(0, 4, 1400.0, 1300.0, 0.0, [1290.0]), member(1, 8, 600.0, 560.0, 0.0, [550.0])]
    text = report.report_markdown({**document(members), "plots": []})
    assert "T(n) = -190.0 + 5,920.0 / n s" in text and "faster than linear" in text


def test_a_slowdown_with_more_nodes_is_called_out():
    members = [member(0, 2, 20.0, 10.0, 0.0, [5.0]), member(1, 4, 30.0, 20.0, 0.0, [15.0])]
    text = report.report_markdown({**document(members), "plots": []})
    # a + b/2 = 5, a + b/4 = 15: b = -40, a = 25.
    assert "T(n) = 25.0 - 40.0 / n s" in text and "the stages took longer on more nodes" in text


def test_breakdown_parts_sum_to_the_wall_time(study):
    provisioning, stages, other, overhead = report.breakdown_seconds(study["configurations"][0])
    assert (provisioning, stages, other, overhead) == (450.0, 1290.0, 33.0, 95.0)
    assert provisioning + stages + other + overhead == study["configurations"][0]["wall_seconds"]


def test_every_member_failed_still_gives_a_report():
    files = report.report_files(document([member(0, 4, 0, 0, 0, [], state="failed")]))
    assert files["time_breakdown.png"].startswith(PNG_SIGNATURE)
    assert "**0 of 1 member runs measured; 1 failed" in files["report.md"].decode()
