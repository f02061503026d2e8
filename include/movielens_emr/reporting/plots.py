"""The reports' figures: one way to make a figure and to turn it into PNG bytes."""
import io


def new_figure(width, height):
    """A figure and its axes. Imported here, as matplotlib takes a second to import and DAG parsing needs none
    of it; the object API (no pyplot) draws with Agg, never an interactive backend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


def png_bytes(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()
