#!/usr/bin/env bash
# Starts, stops or reports this project's Airflow on this machine, without containers: the services of
# docker-compose.yaml (api-server, scheduler, dag-processor, triggerer; LocalExecutor) bound to 127.0.0.1.
#
#   scripts/airflow_services.sh start    # prints the UI's URL once every component is healthy
#   scripts/airflow_services.sh status   # exit 0 when running, 3 when not
#   scripts/airflow_services.sh stop     # the whole session: SIGINT, then SIGTERM, then SIGKILL
#
# Local use only: the UI and the REST API need no login (simple auth manager, everyone an admin).
# Settings: AIRFLOW_HOME (default ./.airflow: its SQLite database, logs, pid file), AIRFLOW_PORT (8080),
# AIRFLOW_START_TIMEOUT (180 s), AIRFLOW_STOP_TIMEOUT (30 s per signal), and the MOVIELENS_* of the README.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export AIRFLOW_HOME=${AIRFLOW_HOME:-$repo/.airflow}
port=${AIRFLOW_PORT:-8080}
url=http://127.0.0.1:$port
pid_file=$AIRFLOW_HOME/services.pid
url_file=$AIRFLOW_HOME/services.url
log_dir=$AIRFLOW_HOME/services
airflow=$repo/.venv/bin/airflow
components=(api-server scheduler dag-processor triggerer)

configure() {
    export AIRFLOW__CORE__DAGS_FOLDER=$repo/dags
    export AIRFLOW__CORE__PLUGINS_FOLDER=$repo/plugins
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__EXECUTOR=LocalExecutor
    export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4}
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}
    export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
    export AIRFLOW__API__HOST=127.0.0.1
    export AIRFLOW__API__PORT=$port
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=$url/execution/
    export PYTHONPATH=$repo/include${PYTHONPATH:+:$PYTHONPATH}
    export PATH=$repo/.venv/bin:$PATH
}

# The process groups of session $1 that still have a live (not zombie) process, one per line.
session_groups() {
    local stat fields state pgid sid
    for stat in /proc/[0-9]*/stat; do
        { read -r fields < "$stat"; } 2>/dev/null || continue
        read -r state _ pgid sid _ <<< "${fields##*) }"
        if [ "$sid" = "$1" ] && [ "$state" != Z ]; then echo "$pgid"; fi
    done | sort -u
}

# When process $1 started (clock ticks after boot), to tell the leader from a later process given its pid.
start_time() {
    local fields
    { read -r fields < "/proc/$1/stat"; } 2>/dev/null || return 0
    read -r -a fields <<< "${fields##*) }"
    echo "${fields[19]}"
}

# The session id in the pid file, unless its leader's pid now belongs to another process (a stale file).
recorded_session() {
    local sid started
    read -r sid started < "$pid_file" 2>/dev/null || return 1
    [ "$(start_time "$sid")" = "$started" ] || [ ! -e "/proc/$sid" ] || return 1
    echo "$sid"
}

running_session() {
    local sid
    sid=$(recorded_session) || return 1
    [ -n "$(session_groups "$sid")" ] && echo "$sid"
}

healthy() {
    "$repo/.venv/bin/python" - "$url/api/v2/monitor/health" <<'EOF' 2>/dev/null
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1], timeout=10))
sys.exit(0 if all(part.get("status") == "healthy" for part in health.values()) else 1)
EOF
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The session leader, run through setsid: the components, each with its own log; when one of them ends,
# or on SIGINT / SIGTERM, it stops the others, so no component outlives the rest.
supervise() {
    echo "$$ $(start_time $$)" > "$pid_file"
    local pids=() component options
    for component in "${components[@]}"; do
        options=()
        # Task and trigger logs are read from this machine's disk: no log server listening on 0.0.0.0.
        case $component in scheduler|triggerer) options=(--skip-serve-logs) ;; esac
        "$airflow" "$component" "${options[@]}" > "$log_dir/$component.log" 2>&1 &
        pids+=($!)
    done
    trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
    wait -n "${pids[@]}" || true
    echo "airflow_services: stopping every component ($(date -u +%FT%TZ))"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait
}

start() {
    local sid waited=0 timeout=${AIRFLOW_START_TIMEOUT:-180}
    if sid=$(running_session); then
        echo "airflow_services: already running at $(cat "$url_file") (session $sid)"
        return 0
    fi
    if port_in_use "$port"; then
        echo "airflow_services: port $port on 127.0.0.1 is taken; set AIRFLOW_PORT" >&2
        return 1
    fi
    scripts/bootstrap.sh
    mkdir -p "$log_dir"
    rm -f "$pid_file"
    echo "airflow_services: preparing the metadata database in $AIRFLOW_HOME" >&2
    "$airflow" db migrate > "$log_dir/db-migrate.log" 2>&1 || { cat "$log_dir/db-migrate.log" >&2; return 1; }
    echo "$url" > "$url_file"
    setsid "$0" _supervise < /dev/null > "$log_dir/supervisor.log" 2>&1 &
    echo "airflow_services: starting ${components[*]} (logs: $log_dir)" >&2
    until [ -s "$pid_file" ] && healthy; do
        if [ -s "$pid_file" ] && ! running_session > /dev/null; then
            echo "airflow_services: the services stopped while starting:" >&2
            tail -n 20 "$log_dir"/*.log >&2
            return 1
        fi
        if [ "$waited" -ge "$timeout" ]; then
            echo "airflow_services: not healthy after $timeout s; stopping (logs: $log_dir)" >&2
            stop >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "airflow_services: Airflow is up at $url (session $(recorded_session); stop with: $0 stop)"
}

# Signals every process group of the session, escalating until none is left.
stop() {
    local sid signal groups group waited timeout=${AIRFLOW_STOP_TIMEOUT:-30}
    sid=$(recorded_session) || { echo "airflow_services: not running"; return 0; }
    for signal in INT TERM KILL; do
        groups=$(session_groups "$sid")
        [ -n "$groups" ] || break
        for group in $groups; do
            kill -s "$signal" -- "-$group" 2>/dev/null || true
        done
        for ((waited = 0; waited < timeout * 10; waited++)); do
            [ -n "$(session_groups "$sid")" ] || break
            sleep 0.1
        done
    done
    if [ -n "$(session_groups "$sid")" ]; then
        echo "airflow_services: processes of session $sid survived SIGKILL: $(session_groups "$sid")" >&2
        return 1
    fi
    rm -f "$pid_file"
    echo "airflow_services: stopped"
}

status() {
    local sid
    if ! sid=$(running_session); then
        echo "airflow_services: not running"
        return 3
    fi
    url=$(cat "$url_file")
    if healthy; then
        echo "airflow_services: running at $url (session $sid), healthy"
    else
        echo "airflow_services: running at $url (session $sid), not healthy yet"
    fi
}

main() {
    configure
    case ${1:-} in
        start) start ;;
        stop) stop ;;
        status) status ;;
        _supervise) supervise ;;
        *) echo "usage: $0 start|stop|status" >&2; return 2 ;;
    esac
}

# On one line: bash has read all of it before the supervisor starts, so editing this file under a
# running supervisor cannot change what it does.
main "$@"; exit
