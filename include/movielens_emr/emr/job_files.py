"""The files an EMR run ships to its cluster: its engine's job files, the bootstrap script and its pins,
and the nodes' wheels, staged once per content."""
import json
import logging
from pathlib import Path

from movielens_emr.data.staging import STAGED_MARKER, content_checksum
from movielens_emr.emr.wheelhouse import REQUIREMENTS_FILE

log = logging.getLogger(__name__)
BOOTSTRAP_FILE = Path(__file__).resolve().parent / "bootstrap" / "install_job_requirements.sh"
WHEELHOUSE_ROOT = "wheelhouses"


def stage_job_files(storage, run_prefix, shipped_files, node, wheels, requirements_file=REQUIREMENTS_FILE):
    """The engine's shipped files (protocol.Engine.shipped_files, the job file first), the bootstrap script
    and the pinned requirements copied into the run's job/ folder, and node's wheels ({file name: path})
    staged once per content; {"shipped": [their URIs, in order], "bootstrap", "requirements",
    "wheelhouse"}: their URIs."""
    uris = {"shipped": []}
    for path in map(Path, shipped_files):
        key = f"{run_prefix}/job/{path.name}"
        storage.put_file(path, key)
        uris["shipped"].append(storage.uri(key))
    sources = (("bootstrap", BOOTSTRAP_FILE, BOOTSTRAP_FILE.name),
               ("requirements", Path(requirements_file), REQUIREMENTS_FILE.name))
    for role, path, name in sources:
        key = f"{run_prefix}/job/{name}"
        storage.put_file(path, key)
        uris[role] = storage.uri(key)
    uris["wheelhouse"] = stage_wheelhouse(storage, node, wheels)
    return uris


def stage_wheelhouse(storage, node, wheels):
    """Upload wheels under wheelhouses/<node name>/<checksum>/ unless already there; the folder's URI."""
    folder = f"{WHEELHOUSE_ROOT}/{node.name}/{content_checksum(wheels)}"
    if storage.exists(f"{folder}/{STAGED_MARKER}"):
        log.info("the %s wheels are already staged at %s", node.name, storage.uri(folder))
        return storage.uri(folder)
    for name, path in sorted(wheels.items()):
        storage.put_file(path, f"{folder}/{name}")
    # The marker goes last, so an interrupted upload is redone rather than trusted.
    storage.put_bytes(json.dumps({"files": sorted(wheels)}).encode(), f"{folder}/{STAGED_MARKER}")
    log.info("staged %d %s wheels at %s", len(wheels), node.name, storage.uri(folder))
    return storage.uri(folder)
