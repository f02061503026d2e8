#!/usr/bin/env bash
# Installs everything, then runs the similarity job on the bundled ml-latest-small sample on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

sample=include/sample_data/ml-latest-small-sample
output=${MOVIELENS_STORAGE_ROOT:-.storage}/sample/similarities.jsonl
mkdir -p "$(dirname "$output")"
.venv/bin/python jobs/movie_similarities.py -r local --no-bootstrap-mrjob \
    --items "$sample/movies.csv" "$sample/ratings.csv" > "$output"
echo "$(wc -l < "$output") similar movie pairs written to $output; the first:"
head -n 3 "$output"
