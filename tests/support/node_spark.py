"""The EMR nodes' Spark, as the EMR double runs it: this machine's pyspark laid out as EMR installs Spark.

EMR 7.9 installs Spark 3.5.5 under /usr/lib/spark: bin/spark-submit, jars/, and python/lib/pyspark.zip
and python/lib/py4j-<version>-src.zip, which spark-submit puts on the PYTHONPATH of the driver and of
the executors' Python workers: a node's bare Python imports pyspark from there, not from site-packages.
The pip package of the same Spark (requirements.txt pins pyspark 3.5.5, the version EMR 7.9 ships) has
the same bin/ and jars/ but not the two zips: spark_home() makes a folder with bin/ and jars/ linked to
the package's and the zips built from the installed pyspark and py4j, once per process.
"""
import atexit
import importlib.util
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

# Folders of the pip package that are not pyspark's Python code (EMR's pyspark.zip has none of them).
NOT_PYTHON = {"jars", "bin", "sbin", "examples", "data", "licenses", "python", "__pycache__"}

_home = []
_lock = threading.Lock()


def package_folder(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed here: the EMR double runs Spark steps with the pinned "
                           "pyspark of requirements.txt (scripts/bootstrap.sh installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def zip_package(folder, archive, skip=frozenset()):
    """The package folder's files (not .pyc, not the top-level folders in skip) into archive, under its
    name."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_dir() or path.suffix == ".pyc" or relative.parts[0] in skip:
                continue
            out.write(path, f"{folder.name}/{relative}")


def py4j_zip_name():
    import py4j.version

    return f"py4j-{py4j.version.__version__}-src.zip"


def spark_home():
    """A SPARK_HOME laid out as EMR's /usr/lib/spark, made once per process."""
    with _lock:
        if not _home:
            pyspark = package_folder("pyspark")
            home = Path(tempfile.mkdtemp(prefix="emr-node-spark-"))
            atexit.register(shutil.rmtree, home, True)
            for name in ("bin", "jars"):
                (home / name).symlink_to(pyspark / name)
            lib = home / "python" / "lib"
            lib.mkdir(parents=True)
            zip_package(pyspark, lib / "pyspark.zip", NOT_PYTHON)
            zip_package(package_folder("py4j"), lib / py4j_zip_name())
            _home.append(home)
        return _home[0]
