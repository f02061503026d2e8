"""mrjob job files, loaded as classes: jobs/ stands alone and is not a package."""
import functools
import importlib.util
import sys
from pathlib import Path


@functools.cache
def load_job_class(job_file, class_name):
    """The MRJob class `class_name` of job_file, imported once; the file's folder goes on sys.path first,
    as it does when Python runs the file, so that the modules it imports from beside it are found."""
    job_file = Path(job_file)
    folder = str(job_file.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(job_file.stem, job_file)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: mrjob finds the script to run tasks from through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def job_instance(job):
    """An instance of an MrjobJob's class with its options, to read its steps() from."""
    return load_job_class(job.job_file, job.job_class)(job.options_with_uris())
