"""What a log says went wrong: the Python tracebacks in it and the exception that ends each."""
import re

TRACEBACK = "Traceback (most recent call last):"
# The line that ends a traceback: a class name, dotted or not, then its message if it has one.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*)(?::(?P<message>.*))?$")
TAIL_LINES = 12


def log_text(messages):
    """A task log as Airflow's log reader returns it (messages with an `event`, and an `error_detail` for a
    logged exception) as text: each event a line, each exception printed as Python prints one."""
    lines = []
    for message in messages:
        lines.append(str(getattr(message, "event", None) or ""))
        details = getattr(message, "error_detail", None) or []
        for error in [details] if isinstance(details, dict) else details:
            lines += exception_lines(error) if isinstance(error, dict) else []
    return "\n".join(lines)


def exception_lines(error):
    """structlog's record of an exception (exc_type, exc_value, frames) as Python's traceback lines."""
    frames = [f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}'
              for frame in error.get("frames") or [] if isinstance(frame, dict)]
    return [TRACEBACK, *frames, f"{error.get('exc_type')}: {error.get('exc_value')}"]


def tracebacks(text):
    """Each complete Python traceback in `text`, in order, as its lines, the exception's line last. A
    traceback written behind a prefix on each line (the local runner logs the job's output as "job: ...")
    is read without it; one cut short (a line without the prefix) is left out."""
    found, current, prefix = [], None, ""
    for line in text.splitlines():
        if TRACEBACK in line:
            prefix, current = line[:line.index(TRACEBACK)], [TRACEBACK]
        elif current is not None and (line.startswith(prefix) or line == prefix.rstrip()):
            body = line[len(prefix):].rstrip()
            current.append(body)
            if body and not body[0].isspace():  # Python writes the exception unindented after the frames
                found.append(current)
                current = None
        else:
            current = None
    return found


def exceptions(text):
    """The exception line ending each traceback in `text`, in order, each exception once: one printed
    bare by the job and again with its module by Airflow (TooManyBadLines, movie_similarities.TooManyBadLines)
    is kept as first seen. Any class name counts: TooManyBadLines, LocalJobFailed, ..."""
    found, seen = [], set()
    for traceback in tracebacks(text):
        match = EXCEPTION_LINE.match(traceback[-1])
        key = (match["name"], (match["message"] or "").strip()) if match else None
        if key and key not in seen:
            seen.add(key)
            found.append(traceback[-1])
    return found


def first_traceback_tail(text, lines=TAIL_LINES):
    """The last `lines` lines of the first traceback in `text` (the innermost error, the job's own when it
    failed), or None when there is none."""
    found = [traceback for traceback in tracebacks(text) if EXCEPTION_LINE.match(traceback[-1])]
    return "\n".join(found[0][-lines:]) if found else None
