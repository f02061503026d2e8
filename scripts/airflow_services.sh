#!/usr/bin/env bash
# Starts, stops or reports this project's Airflow on this machine, without containers: the services of
# docker-compose.yaml (api-server, scheduler, dag-processor, triggerer; LocalExecutor) bound to 127.0.0.1,
# each in a session of its own, so that one ending leaves the others running.
#
#   scripts/airflow_services.sh start    # starts the components not running; prints the UI's URL once healthy
#   scripts/airflow_services.sh status   # each component's state; exit 0 when all run, 1 when some, 3 when none
#   scripts/airflow_services.sh stop     # SIGTERM to every process group, SIGKILL to what is left after a grace
#
# Local use only: the UI and the REST API need no login (simple auth manager, everyone an admin).
# Settings: AIRFLOW_HOME (default ./.airflow: its SQLite database; logs and pid files in services/),
# AIRFLOW_PORT (8080), AIRFLOW_START_TIMEOUT (180 s), AIRFLOW_STOP_TIMEOUT (5 s of grace before SIGKILL),
# and the MOVIELENS_* of docs/pipeline.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export AIRFLOW_HOME=${AIRFLOW_HOME:-$repo/.airflow}
port=${AIRFLOW_PORT:-8080}
url=http://127.0.0.1:$port
url_file=$AIRFLOW_HOME/services.url
log_dir=$AIRFLOW_HOME/services
legacy_pid_file=$AIRFLOW_HOME/services.pid  # the one session of earlier versions, still stopped by stop
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

# Field $2 of /proc/$1/stat, counted from the state (1 state, 3 process group, 4 session, 20 start time).
stat_field() {
    local fields
    { read -r fields < "/proc/$1/stat"; } 2>/dev/null || return 0
    read -r -a fields <<< "${fields##*) }"
    echo "${fields[$2 - 1]}"
}

# The live (not zombie) processes of session $1, "pid process-group" per line.
session_processes() {
    local stat fields state pgid sid
    for stat in /proc/[0-9]*/stat; do
        { read -r fields < "$stat"; } 2>/dev/null || continue
        read -r state _ pgid sid _ <<< "${fields##*) }"
        if [ "$sid" = "$1" ] && [ "$state" != Z ]; then echo "${stat:6:-5} $pgid"; fi
    done
}

# The session recorded in pid file $1 (its leader's pid), unless that pid now belongs to another process.
recorded_session() {
    local sid started
    [ -f "$1" ] || return 1
    read -r sid started < "$1" || return 1
    [ "$(stat_field "$sid" 20)" = "$started" ] || [ ! -e "/proc/$sid" ] || return 1
    echo "$sid"
}

# Component $1's state: "running <pid>", "dead <pid> <processes of its session left>" or "stopped".
state_of() {
    local sid state
    sid=$(recorded_session "$log_dir/$1.pid") || { echo stopped; return 0; }
    state=$(stat_field "$sid" 1)
    if [ -n "$state" ] && [ "$state" != Z ]; then
        echo "running $sid"
    else
        echo "dead $sid $(session_processes "$sid" | wc -l)"
    fi
}

# The components of ${components[@]} not running, on one line.
not_running() {
    local component state
    for component in "${components[@]}"; do
        read -r state _ <<< "$(state_of "$component")"
        [ "$state" = running ] || echo -n "$component "
    done
}

# The API's health report, "<part> <status>" per line (metadatabase, scheduler, triggerer, dag_processor);
# fails when the API at $1 does not answer. With $2 (seconds since the epoch) and part names after it, those
# parts are "starting" until they have a heartbeat after $2: a killed scheduler's last one counts as healthy
# for 30 s, and must not pass for its successor's.
health() {
    "$repo/.venv/bin/python" - "$1/api/v2/monitor/health" "${@:2}" <<'EOF' 2>/dev/null
import json, sys, urllib.request
from datetime import datetime, timezone
since, parts = (float(sys.argv[2]), sys.argv[3:]) if sys.argv[2:] else (0, [])
for part, state in json.load(urllib.request.urlopen(sys.argv[1], timeout=10)).items():
    beat = state.get(f"latest_{part}_heartbeat")
    beat = beat and datetime.fromisoformat(beat)
    fresh = part not in parts or (beat and beat.replace(tzinfo=beat.tzinfo or timezone.utc).timestamp() > since)
    print(part, state.get("status") if fresh else "starting")
EOF
}

# Whether every part is healthy, as health's arguments ask.
healthy() {
    local report
    report=$(health "$url" "$@") && [ -n "$report" ] && ! grep -qv ' healthy$' <<< "$report"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sends signal $1 to every process group of the sessions $2...
signal_sessions() {
    local signal=$1 sid group
    shift
    for sid in "$@"; do
        for group in $(session_processes "$sid" | cut -d' ' -f2 | sort -u); do
            kill -s "$signal" -- "-$group" 2>/dev/null || true
        done
    done
}

# Whether any of the sessions $@ still has a live process.
any_alive() {
    local sid
    for sid in "$@"; do
        [ -z "$(session_processes "$sid")" ] || return 0
    done
    return 1
}

# Ends the sessions $@: SIGTERM, a grace of AIRFLOW_STOP_TIMEOUT seconds, then SIGKILL; fails if any survive.
# The grace is short: the scheduler, dag-processor and api-server end within 3 s of SIGTERM, while the
# triggerer waits 10 s for its trigger runner, whose triggers a restarted triggerer resumes anyway.
end_sessions() {
    local signal waited grace=${AIRFLOW_STOP_TIMEOUT:-5}
    for signal in TERM KILL; do
        signal_sessions "$signal" "$@"
        for ((waited = 0; waited < grace * 10; waited++)); do
            any_alive "$@" || return 0
            sleep 0.1
        done
        grace=2  # after SIGKILL, only the kernel's own time
    done
    ! any_alive "$@"
}

# Starts component $1 in a session of its own, recorded in its pid file; its output goes to its log.
launch() {
    local component=$1 options=() pid
    # Task and trigger logs are read from this machine's disk: no log server listening on 0.0.0.0.
    case $component in scheduler|triggerer) options=(--skip-serve-logs) ;; esac
    echo "airflow_services: starting $component ($(date -u +%FT%TZ))" >> "$log_dir/$component.log"
    # A background child of a non-interactive shell leads no process group, so setsid(1) does not fork:
    # $! is the component itself, the leader of its new session and process group.
    setsid "$airflow" "$component" "${options[@]}" < /dev/null >> "$log_dir/$component.log" 2>&1 &
    pid=$!
    echo "$pid $(stat_field "$pid" 20)" > "$log_dir/$component.pid.new"
    mv "$log_dir/$component.pid.new" "$log_dir/$component.pid"
}

# Ends what is left of the dead components $@ (a killed scheduler's executor workers) before their restart.
clear_remains() {
    local component state sid sids=()
    for component in "$@"; do
        read -r state sid _ <<< "$(state_of "$component")"
        [ "$state" = dead ] && sids+=("$sid")
    done
    [ ${#sids[@]} -eq 0 ] || end_sessions "${sids[@]}" || {
        echo "airflow_services: what is left of ${*} survived SIGKILL" >&2
        return 1
    }
}

# Waits until the API reports every component healthy, each of the components $@ started at $1 by a
# heartbeat of its own; fails when one of them ends, or at the timeout.
wait_until_healthy() {
    local since=$1 waited=0 timeout=${AIRFLOW_START_TIMEOUT:-180} component state
    shift
    until healthy "$since" "${@//-/_}"; do
        for component in "$@"; do
            read -r state _ <<< "$(state_of "$component")"
            if [ "$state" != running ]; then
                echo "airflow_services: $component stopped while starting; the end of its log:" >&2
                tail -n 20 "$log_dir/$component.log" >&2
                return 1
            fi
        done
        if [ "$waited" -ge "$timeout" ]; then
            echo "airflow_services: not healthy after $timeout s (logs: $log_dir)" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# Components started beside running ones join them at their URL, whatever AIRFLOW_PORT now says.
adopt_running_url() {
    local recorded
    recorded=$(cat "$url_file" 2>/dev/null) || return 0
    port=${recorded##*:}
    url=$recorded
}

start() {
    local missing
    read -r -a missing <<< "$(not_running)"
    if [ ${#missing[@]} -eq 0 ]; then
        echo "airflow_services: already running at $(cat "$url_file")"
        return 0
    fi
    [ ${#missing[@]} -eq ${#components[@]} ] || adopt_running_url
    configure
    mkdir -p "$log_dir"
    clear_remains "${missing[@]}"
    if [[ " ${missing[*]} " == *" api-server "* ]] && port_in_use "$port"; then
        echo "airflow_services: port $port on 127.0.0.1 is taken; set AIRFLOW_PORT" >&2
        return 1
    fi
    scripts/bootstrap.sh
    if [ ${#missing[@]} -eq ${#components[@]} ]; then
        echo "airflow_services: preparing the metadata database in $AIRFLOW_HOME" >&2
        "$airflow" db migrate > "$log_dir/db-migrate.log" 2>&1 || { cat "$log_dir/db-migrate.log" >&2; return 1; }
        echo "$url" > "$url_file"
    fi
    launch_and_wait "${missing[@]}"
}

# Launches the components $@ and waits for health; stops them again if they do not get there.
launch_and_wait() {
    local component sids=() since
    echo "airflow_services: starting $* (logs: $log_dir)" >&2
    since=$(date +%s)
    for component in "$@"; do
        launch "$component"
        sids+=("$(recorded_session "$log_dir/$component.pid")")
    done
    if ! wait_until_healthy "$since" "$@"; then
        echo "airflow_services: stopping $*" >&2
        end_sessions "${sids[@]}" || true
        for component in "$@"; do rm -f "$log_dir/$component.pid"; done
        return 1
    fi
    echo "airflow_services: Airflow is up at $url (stop with: $0 stop)"
}

# Stops every component, and whatever is left of dead ones.
stop() {
    local file sid files=() sids=()
    for file in "$log_dir"/*.pid "$legacy_pid_file"; do
        [ -f "$file" ] || continue
        files+=("$file")
        if sid=$(recorded_session "$file"); then sids+=("$sid"); fi
    done
    if [ ${#sids[@]} -eq 0 ] || ! any_alive "${sids[@]}"; then
        rm -f "${files[@]}"
        echo "airflow_services: not running"
        return 0
    fi
    if ! end_sessions "${sids[@]}"; then
        echo "airflow_services: processes survived SIGKILL in sessions ${sids[*]}" >&2
        return 1
    fi
    rm -f "${files[@]}"
    echo "airflow_services: stopped"
}

# One line per component (its process and, from the API, its health); exit 0 all running, 1 some, 3 none.
status() {
    local component state pid left report="" running=0
    url=$(cat "$url_file" 2>/dev/null) || url=""
    [ -z "$url" ] || report=$(health "$url") || report=""
    for component in "${components[@]}"; do
        read -r state pid left <<< "$(state_of "$component")"
        case $state in
            running) running=$((running + 1))
                     echo "$component: running (pid $pid)$(health_of "$component" "$report")" ;;
            dead) [ "$left" -eq 0 ] && left="" || left="; $left of its processes left"
                  echo "$component: DEAD (pid $pid has ended$left); start restarts it" ;;
            *) echo "$component: not running" ;;
        esac
    done
    if [ "$running" -eq 0 ]; then
        echo "airflow_services: not running"
        return 3
    fi
    echo "airflow_services: $running of ${#components[@]} components running at $url"
    [ "$running" -eq ${#components[@]} ] || return 1
}

# ", <health>" of component $1 in the API's report $2 (the api-server's: whether it answered).
health_of() {
    local part=${1//-/_} line
    if [ "$part" = api_server ]; then
        [ -n "$2" ] && echo ", answering" || echo ", not answering"
    elif [ -z "$2" ]; then
        echo ", health unknown (the API does not answer)"
    else
        line=$(grep "^$part " <<< "$2") || line="$part unknown"
        echo ", ${line#* }"
    fi
}

main() {
    case ${1:-} in
        start) start ;;
        stop) stop ;;
        status) status ;;
        *) echo "usage: $0 start|stop|status" >&2; return 2 ;;
    esac
}

# On one line: bash has read all of it before it runs, so editing this file under a running start cannot
# change what it does.
main "$@"; exit
