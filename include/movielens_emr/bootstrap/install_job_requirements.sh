#!/bin/bash
# EMR bootstrap action: the similarity job's Python dependencies, pinned, on every node.
# EMR 7 (Amazon Linux 2023) runs Python 3.9: numpy 2.0.2 is the newest numpy for it.
set -euo pipefail
python3 -m pip --version >/dev/null 2>&1 || sudo dnf install -y python3-pip
sudo python3 -m pip install --quiet "mrjob==0.7.4" "numpy==2.0.2" "PyYAML==6.0.2"
python3 -c "import mrjob, numpy; print('installed mrjob', mrjob.__version__, 'numpy', numpy.__version__)"
