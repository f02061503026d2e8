"""A benchmark's report: report.md, summary.json and PNG plots, as bytes keyed by file name."""
import itertools
import json

from movielens_emr.config.targets import target_named
from movielens_emr.data.storage import run_folder
from movielens_emr.reporting.benchmark import params_with_defaults
from movielens_emr.reporting.plots import new_figure, png_bytes
from movielens_emr.reporting.sizing_section import plot_sizing, sizing_lines

CONVENTIONS = (
    "Amdahl's law, two conventions for the parallel fraction p. **Relative** to the smallest "
    "configuration n0, as the study did: S = T(n0) / T(n) = 1 / ((1 - p) + p n0 / n), so "
    "p = (1 - 1/S) / (1 - n0/n); 4 -> 8 nodes at 1.79x gives p = 0.88. **Absolute**, relative to one "
    "node: T(n) = T(1) ((1 - p) + p / n); the same two figures give p = 0.97. Both come from one "
    "least-squares fit of T(n) = a + b / n to the median stage seconds (exact through two node counts): "
    "p = b / (a + b) absolute, (b / n0) / (a + b / n0) relative. The fixed overhead, wall - stages "
    "(provisioning, scheduling, termination, Airflow), is reported apart from it."
)
SUPERLINEAR = (" A negative serial part means faster than linear scaling (e.g. more memory or cache per "
               "node), which Amdahl's law does not model.")
SLOWDOWN = (" A negative parallel part means the stages took longer on more nodes (too little work per node, "
            "or a machine busy with other work), which Amdahl's law does not model.")
COLUMNS = ("nodes", "input", "runs ok", "state", "wall s", "cluster s", "provisioning s", "stages s",
           "overhead s", "wall x", "cluster x", "efficiency", "node-min", "cost USD")
NUMBER_COLUMNS = (("wall_seconds", 1), ("cluster_seconds", 1), ("provisioning_seconds", 1),
                  ("stages_seconds", 1), ("overhead_seconds", 1), ("wall_speedup", 2), ("cluster_speedup", 2),
                  ("efficiency", 2), ("node_minutes", 2), ("estimated_cost_usd", 4))
QUALITY_COLUMNS = ("nodes", "input", "recommender", "k", "runs scored", "P@k", "R@k", "NDCG@k", "MAP@k",
                   "coverage")
QUALITY_NOTE = (
    "Each member run scores its recommendations on its own per-user time split of the input (each user's "
    "latest 20 % of ratings held out, ratings of 4 or more the positives; see docs/als.md, Evaluation), "
    "beside popularity on the same split. Medians over the member runs that scored each recommender.")
COLOURS = ["#3182bd", "#31a354", "#756bb1", "#e6550d", "#636363"]
BREAKDOWN = (("provisioning", "#9ecae1"), ("stages", "#3182bd"), ("other cluster time", "#fdae6b"),
             ("overhead (wall - cluster)", "#e6550d"))


def report_folder(run_id):
    """benchmarks/<run id with every character outside [A-Za-z0-9._-] made '_'>."""
    return "benchmarks/" + run_folder(run_id).removeprefix("runs/")


def _number(value, digits=1):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _nodes(count):
    return f"{count} node" + ("" if count == 1 else "s")


def _percent(fraction):
    return f"{fraction * 100:g} %"


def summary_rows(configurations):
    """One row of display strings per configuration, in COLUMNS order."""
    return [(str(row["node_count"]), _percent(row["sample_fraction"]), f"{row['measured']}/{row['runs']}",
             row["state"], *(_number(row[field], digits) for field, digits in NUMBER_COLUMNS))
            for row in configurations]


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary_table(configurations):
    """The per-configuration medians as a Markdown table (also what the task log shows)."""
    return markdown_table(COLUMNS, summary_rows(configurations))


def quality_table(quality):
    """The recommendation quality medians (benchmark.recommendation_quality) as a Markdown table."""
    rows = [(str(row["node_count"]), _percent(row["sample_fraction"]), row["recommender"], str(row["k"]),
             f"{row['runs']}/{row['measured']}",
             *(_number(row[field], 4) for field in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k",
                                                    "coverage")))
            for row in quality]
    return markdown_table(QUALITY_COLUMNS, rows)


def stage_table(configurations):
    width = max((len(row["stage_seconds"]) for row in configurations), default=0)
    header = ("nodes", "input", *(f"stage {number} s" for number in range(1, width + 1)),
              "fixed s (wall - stages)")
    rows = []
    for row in configurations:
        stages = row["stage_seconds"] + [None] * (width - len(row["stage_seconds"]))
        rows.append((str(row["node_count"]), _percent(row["sample_fraction"]), *map(_number, stages),
                     _number(row["fixed_seconds"])))
    return markdown_table(header, rows)


def amdahl_lines(amdahl):
    lines = []
    for entry in amdahl:
        fit, label = entry["fit"], f"Input {_percent(entry['sample_fraction'])}"
        if fit is None:
            lines.append(f"- {label}: no fit (fewer than two measured node counts).")
            continue
        lines.append(
            f"- {label}, nodes {', '.join(map(str, fit['node_counts']))}: "
            f"T(n) = {_number(fit['serial_seconds'])} {'-' if fit['parallel_seconds'] < 0 else '+'} "
            f"{_number(abs(fit['parallel_seconds']))} / n s; "
            f"**p = {fit['parallel_fraction_relative']:.2f} relative to "
            f"{_nodes(fit['baseline_node_count'])}**, "
            f"p = {fit['parallel_fraction_absolute']:.2f} absolute; "
            f"residual RMS {_number(fit['residual_rms_seconds'], 2)} s; "
            f"fixed overhead (median wall - stages) {_number(entry['fixed_seconds'])} s."
            + (SUPERLINEAR if fit["serial_seconds"] < 0 else "")
            + (SLOWDOWN if fit["parallel_seconds"] < 0 else ""))
    return lines


def growth_lines(growth):
    lines = []
    for entry in growth:
        points = ", ".join(f"{_percent(fraction)}: {_number(seconds)} s"
                           for fraction, seconds in entry["points"])
        lines.append(
            f"- {_nodes(entry['node_count'])} ({points}): "
            f"cluster s ~ {_number(entry['fixed_seconds'])} + "
            f"{_number(entry['seconds_per_full_input'])} x fraction "
            f"(residual RMS {_number(entry['residual_rms_seconds'], 2)} s); "
            f"{_number(entry['input_ratio'], 2)}x the input took "
            f"{_number(entry['time_ratio'], 2)}x the cluster time.")
    return lines


def member_table(members):
    header = ("#", "run id", "nodes", "input", "state", "wall s", "cluster s", "error")
    rows = []
    for member in members:
        metrics, error = member.get("metrics") or {}, member.get("error") or "-"
        rows.append((str(member["index"]), f"`{member['run_id']}`" if member["run_id"] else "-",
                     str(member["conf"]["node_count"]), _percent(member["conf"]["sample_fraction"]),
                     member["state"], _number(metrics.get("wall_seconds")),
                     _number(metrics.get("cluster_seconds")), error.replace("|", "/").replace("\n", " ")))
    return markdown_table(header, rows)


def report_markdown(document):
    """report.md of a benchmark document (the content of summary.json)."""
    params, configurations = document["params"], document["configurations"]
    failed, on_a_cluster = document["failed_members"], target_named(params["target"]).cluster
    lines = [
        f"# movielens_similarity benchmark `{document['benchmark_run_id']}`: the {params['engine']} engine",
        "",
        f"movielens_similarity runs with the {params['engine']} engine: "
        f"dataset {params['dataset']} on the {params['target']} target"
        + (f" ({params['instance_type']} nodes)" if on_a_cluster else "") + "; "
        f"node counts {', '.join(map(str, params['node_counts']))}; "
        f"inputs {', '.join(map(_percent, params['sample_fractions']))}; "
        f"{params['repetitions']} repetition(s); member runs by {params['member_runs']}, "
        f"{'in parallel' if params['parallel'] else 'one at a time'}."
        + (f" Local target: nodes are parallel tasks on {document['host_cpus']} CPUs, shared with whatever "
           "else the machine runs." if not on_a_cluster else ""), "",
        f"**{document['measured_members']} of {document['members']} member runs measured"
        + (f"; {failed} failed and left out of every median (see Member runs).**" if failed else ".**"), "",
        "## Summary (medians per configuration)", "",
        "Speedups (x) are against the smallest measured node count at the same input; efficiency is the "
        "cluster speedup divided by the node ratio. Overhead is wall - cluster.", "",
        summary_table(configurations), "",
    ]
    if document.get("recommendation_quality"):
        lines += ["## Recommendation quality", "", QUALITY_NOTE, "",
                  quality_table(document["recommendation_quality"]), ""]
    lines += [
        "## Stages", "", stage_table(configurations), "",
        "## Amdahl's law", "", CONVENTIONS, "", *amdahl_lines(document["amdahl"]), "",
    ]
    if document["input_growth"]:
        lines += ["## Input size", "", *growth_lines(document["input_growth"]), ""]
    if document.get("sizing"):
        lines += ["## Sizing", "", *sizing_lines(document["sizing"]), ""]
    lines += ["## Plots", "", *(f"![{name}]({name})" for name in document["plots"]), "",
              "## Member runs", "", member_table(document["member_runs"]), ""]
    return "\n".join(lines)


def plot_title(document, title):
    """A plot's title, its second line naming what was benchmarked: a plot saved on its own still says so."""
    params = document["params"]
    return f"{title}\n{params['engine']} engine, {params['dataset']}, {params['target']} target"


def _measured(configurations, fraction=None):
    return [row for row in configurations
            if row["measured"] and (fraction is None or row["sample_fraction"] == fraction)]


def plot_time_vs_nodes(document):
    """Median stage seconds against node count with the ideal and the fitted Amdahl curves; wall and cluster
    seconds too when there is one input size (with several, the breakdown plot has them)."""
    several = len(document["amdahl"]) > 1
    figure, axes = new_figure(9.5 if several else 7.5, 5)
    for entry, colour in zip(document["amdahl"], itertools.cycle(COLOURS), strict=False):
        rows = _measured(document["configurations"], entry["sample_fraction"])
        label = f" ({_percent(entry['sample_fraction'])})" if several else ""
        if not several:
            _draw_totals(axes, rows, colour)
        staged = [row for row in rows if row["stages_seconds"] is not None]
        axes.plot([row["node_count"] for row in staged], [row["stages_seconds"] for row in staged], "o",
                  color=colour, markersize=8, label="stages" + label)
        if entry["fit"]:
            _draw_model_curves(axes, entry["fit"], staged, colour, label)
    measured_nodes = sorted({row["node_count"] for row in _measured(document["configurations"])})
    axes.set(title=plot_title(document, "Time vs nodes: medians, ideal scaling and Amdahl's law (stages)"),
             xlabel="nodes",
             ylabel="seconds", xticks=measured_nodes)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", **({"loc": "upper left", "bbox_to_anchor": (1.02, 1)} if several else {}))
    return png_bytes(figure)


def _draw_totals(axes, rows, colour):
    nodes = [row["node_count"] for row in rows]
    axes.plot(nodes, [row["wall_seconds"] for row in rows], "^:", color=colour, alpha=0.6, label="wall")
    axes.plot(nodes, [row["cluster_seconds"] for row in rows], "s--", color=colour, alpha=0.6,
              label="cluster")


def _draw_model_curves(axes, fit, staged, colour, label):
    base = min(staged, key=lambda row: row["node_count"])
    low, high = fit["node_counts"][0], fit["node_counts"][-1]
    grid = [low + (high - low) * step / 100 for step in range(101)]
    axes.plot(grid, [base["stages_seconds"] * base["node_count"] / n for n in grid], ":", color="black",
              label=f"ideal: stages({base['node_count']}) x {base['node_count']}/n" + label)
    axes.plot(grid, [fit["serial_seconds"] + fit["parallel_seconds"] / n for n in grid], "-", color=colour,
              label=f"Amdahl fit: p = {fit['parallel_fraction_relative']:.2f} rel., "
                    f"{fit['parallel_fraction_absolute']:.2f} abs." + label)


def breakdown_seconds(row):
    """(provisioning, stages, other cluster time, overhead) seconds of a configuration, none negative."""
    provisioning, stages = row["provisioning_seconds"] or 0.0, row["stages_seconds"] or 0.0
    other = max(0.0, (row["cluster_seconds"] or 0.0) - provisioning - stages)
    return provisioning, stages, other, max(0.0, row["overhead_seconds"] or 0.0)


def plot_time_breakdown(document):
    """Stacked bars per configuration: provisioning, stages, other cluster time, overhead."""
    rows = document["configurations"]
    figure, axes = new_figure(max(6.0, 1.3 * len(rows) + 2), 5)
    labels = [f"{_nodes(row['node_count'])}\n{_percent(row['sample_fraction'])}" for row in rows]
    bottoms = [0.0] * len(rows)
    parts = [breakdown_seconds(row) if row["measured"] else (0.0,) * 4 for row in rows]
    for number, (name, colour) in enumerate(BREAKDOWN):
        heights = [part[number] for part in parts]
        axes.bar(labels, heights, bottom=bottoms, color=colour, label=name)
        bottoms = [bottom + height for bottom, height in zip(bottoms, heights, strict=True)]
    for position, row in enumerate(rows):
        if not row["measured"]:
            axes.text(position, 0, "failed", ha="center", va="bottom", color="red")
    axes.set(title=plot_title(document, "Where the wall time went (medians per configuration)"),
             xlabel="configuration",
             ylabel="seconds")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # never over a bar
    axes.grid(axis="y", alpha=0.3)
    return png_bytes(figure)


def plot_cost_vs_time(document):
    """Median cost (node-minutes where no price applies) against median wall minutes, per configuration."""
    rows = [row for row in _measured(document["configurations"]) if row["wall_seconds"] is not None]
    priced = any(row["estimated_cost_usd"] for row in rows)
    field, unit = ("estimated_cost_usd", "estimated cost (USD)") if priced else ("node_minutes",
                                                                                   "node-minutes")
    figure, axes = new_figure(7, 5)
    xs, ys = [row["wall_seconds"] / 60 for row in rows], [row[field] or 0.0 for row in rows]
    axes.scatter(xs, ys, s=60, color="#3182bd")
    for x, y, row in zip(xs, ys, rows, strict=True):
        axes.annotate(f"{_nodes(row['node_count'])}, {_percent(row['sample_fraction'])}", (x, y),
                      textcoords="offset points", xytext=(6, 6), fontsize="small")
    title = "Cost" if priced else "Node-minutes"
    axes.set(title=plot_title(document, f"{title} vs wall time (medians)"
                              + ("" if priced else "; no price on this target")),
             xlabel="wall minutes", ylabel=unit)
    # Room above and to the right for the point labels.
    axes.set_xlim(0, max(xs, default=1) * 1.3 or 1)
    axes.set_ylim(0, max(ys, default=1) * 1.25 or 1)
    axes.grid(alpha=0.3)
    return png_bytes(figure)


def plot_time_vs_input(document):
    """Median cluster seconds against sample fraction, one line per node count, with its linear fit."""
    figure, axes = new_figure(7, 5)
    for entry in document["input_growth"]:
        fractions, fixed, per_input = [point[0] for point in entry["points"]], entry["fixed_seconds"], entry[
            "seconds_per_full_input"]
        line = axes.plot(fractions, [point[1] for point in entry["points"]], "o",
                         label=_nodes(entry["node_count"]))
        axes.plot([0, max(fractions)], [fixed, fixed + per_input * max(fractions)], "-",
                  color=line[0].get_color(), alpha=0.6, label=f"fit: {fixed:.0f} + {per_input:.0f} x f s")
    axes.set(title=plot_title(document, "Cluster time vs input size (medians)"),
             xlabel="sample fraction of users",
             ylabel="cluster seconds")
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return png_bytes(figure)


def plot_names(document):
    """The plots a document gets: time vs input only when some node count was measured at several inputs."""
    names = ["time_vs_nodes.png", "time_breakdown.png", "cost_vs_time.png"]
    names += ["time_vs_input.png"] if document["input_growth"] else []
    return names + (["sizing.png"] if "model" in (document.get("sizing") or {}) else [])


PLOTTERS = {"time_vs_nodes.png": plot_time_vs_nodes, "time_breakdown.png": plot_time_breakdown,
            "cost_vs_time.png": plot_cost_vs_time, "time_vs_input.png": plot_time_vs_input,
            "sizing.png": plot_sizing}


def report_files(document):
    """{file name: bytes}: report.md, summary.json and the plots of a benchmark document; params it lacks
    (a document of a sweep from before the engine field) at their defaults."""
    document = {**document, "params": params_with_defaults(document["params"]), "plots": plot_names(document)}
    files = {name: PLOTTERS[name](document) for name in document["plots"]}
    files["summary.json"] = json.dumps(document, indent=1).encode()
    files["report.md"] = report_markdown(document).encode()
    return files
