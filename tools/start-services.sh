#!/usr/bin/env bash
# Start a real Redis and a real PostgreSQL on loopback for trunkkey's ledger tests,
# each with a read-only replica (so the tests meet the errors a replica really gives).
#
#   eval "$(bash tools/start-services.sh)"    # start (idempotent), export the URLs
#   eval "$(bash tools/start-services.sh --replicated)"
#                                             # also a PostgreSQL primary with a synchronous
#                                             # standby and a Redis Cluster (3 primaries +
#                                             # 1 replica each); start again to repair them
#   bash tools/start-services.sh --stop       # stop everything this script started
#
# The replicated topologies are built by tools/faults/replicated.py (run here as
# `python -m tools.faults.replicated start`), the same code the failover tests
# use to repair them after killing a primary: one way to build a topology.
#
# stdout carries only `export NAME=value` lines, so the output can be eval'd;
# every log line goes to stderr. Ports and the state directory can be changed
# through the environment (defaults below). Running as root, PostgreSQL runs as
# the `postgres` user (it refuses to run as root); as another user it runs as
# that user.
set -euo pipefail

REDIS_PORT="${TRUNKKEY_REDIS_PORT:-6390}"
REDIS_REPLICA_PORT="${TRUNKKEY_REDIS_REPLICA_PORT:-6391}"
PG_PORT="${TRUNKKEY_PG_PORT:-5439}"
PG_REPLICA_PORT="${TRUNKKEY_PG_REPLICA_PORT:-5440}"
# The replicated topologies (--replicated); ports are fixed at their first start.
PG_PAIR_PORTS="${TRUNKKEY_PG_PAIR_PORTS:-5441,5442}"
REDIS_CLUSTER_PORTS="${TRUNKKEY_REDIS_CLUSTER_PORTS:-7390,7391,7392,7393,7394,7395}"
REDIS_CLUSTER_BUS_PORTS="${TRUNKKEY_REDIS_CLUSTER_BUS_PORTS:-17390,17391,17392,17393,17394,17395}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${TRUNKKEY_SERVICES_DIR:-${TMPDIR:-/tmp}/trunkkey-services-$(id -u)}"
PYTHON="${PYTHON:-python3}"
PG_DB=trunkkey

log() { printf 'start-services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_pg() {
    # PostgreSQL refuses to run as root: drop to the postgres user when we are root.
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

install_packages() {
    local need=()
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
    pg_bindir >/dev/null 2>&1 || need+=(postgresql)
    if [ "${#need[@]}" -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}: install them (sudo apt-get install ${need[*]})"
        log "installing ${need[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq "${need[@]}" >&2
    fi
    if ! "$PYTHON" -c 'import redis, psycopg' >/dev/null 2>&1; then
        log "installing the Python clients (redis, psycopg[binary]) into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
        "$PYTHON" -m pip install -q 'redis>=5' 'psycopg[binary]>=3.1' >&2
    fi
}

redis_up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }
# A replica answers PING before it has synced; WAIT-based tests need the link up.
redis_replica_synced() { redis-cli -p "$1" info replication 2>/dev/null | grep -q "master_link_status:up"; }

# What RedisLedger refuses to run on (it reads these on every new connection):
# an eviction policy under a maxmemory evicts spent tokens, and without the
# append-only file a restart loses every spend since the last snapshot.
check_redis_settings() {
    local port="$1" policy maxmemory aof
    policy="$(redis-cli -p "$port" config get maxmemory-policy | sed -n 2p)"
    maxmemory="$(redis-cli -p "$port" config get maxmemory | sed -n 2p)"
    aof="$(redis-cli -p "$port" config get appendonly | sed -n 2p)"
    if [ "$aof" != yes ] || { [ "$maxmemory" != 0 ] && [ "$policy" != noeviction ]; }; then
        die "redis on $port runs with appendonly=$aof maxmemory=$maxmemory maxmemory-policy=$policy;" \
            "the ledger refuses that: stop it (bash $0 --stop) and start again"
    fi
}

start_redis() {
    local port="$1" dir="$STATE/redis-$1"
    shift
    if redis_up "$port"; then
        log "redis already answering on $port"
        check_redis_settings "$port"
        return 0
    fi
    mkdir -p "$dir"
    log "starting redis-server on 127.0.0.1:$port"
    # AOF on and noeviction: the settings RedisLedger accepts. appendfsync everysec
    # is the common production setting; docs/ledgers.md says what it does and does
    # not survive.
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --save '' --appendonly yes --appendfsync everysec \
        --maxmemory 0 --maxmemory-policy noeviction "$@" >&2
}

wait_for() {
    local what="$1"
    shift
    local i
    for i in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "$what did not come up (see logs in $STATE)"
}

pg_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; }

start_postgres() {
    local primary="$STATE/pg-primary" replica="$STATE/pg-replica"
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$STATE"
    if [ ! -s "$primary/PG_VERSION" ]; then
        log "initdb $primary"
        as_pg "$PG_BIN/initdb" -D "$primary" -U postgres -A trust --no-instructions >/dev/null 2>"$STATE/initdb.log" \
            || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
        cat >>"$primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$STATE'
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = on
synchronous_commit = on
EOF
        echo "host replication postgres 127.0.0.1/32 trust" >>"$primary/pg_hba.conf"
    fi
    if pg_up "$PG_PORT"; then
        log "postgres already answering on $PG_PORT"
    else
        log "starting postgres on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$primary" -l "$STATE/pg-primary.log" -w -t 30 start >&2
    fi
    wait_for "postgres" pg_up "$PG_PORT"
    if ! as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
        as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB" >&2
    fi
    # A real hot standby: it answers reads and refuses writes with SQLSTATE 25006,
    # exactly what a ledger pointed at a replica by mistake would meet.
    if [ ! -s "$replica/PG_VERSION" ]; then
        log "pg_basebackup -> $replica (hot standby)"
        as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$replica" -R -X stream --checkpoint=fast >&2
        cat >>"$replica/postgresql.conf" <<EOF
port = $PG_REPLICA_PORT
EOF
    fi
    if pg_up "$PG_REPLICA_PORT"; then
        log "postgres standby already answering on $PG_REPLICA_PORT"
    else
        log "starting postgres standby on 127.0.0.1:$PG_REPLICA_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$replica" -l "$STATE/pg-replica.log" -w -t 30 start >&2
    fi
    wait_for "postgres standby" pg_up "$PG_REPLICA_PORT"
}

replicated() {
    # tools/ is a package of the repository, not of the installed library.
    (cd "$ROOT" && "$PYTHON" -m tools.faults.replicated "$@" --dir "$STATE/replicated")
}

stop_all() {
    local port pidfile
    if [ -d "$STATE/replicated" ]; then
        log "stopping the replicated topologies in $STATE/replicated"
        replicated stop >&2 || true
    fi
    for port in "$REDIS_REPLICA_PORT" "$REDIS_PORT"; do
        pidfile="$STATE/redis-$port/redis.pid"
        if redis_up "$port"; then
            log "stopping redis on $port"
            redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        fi
        rm -f "$pidfile"
    done
    if PG_BIN="$(pg_bindir)"; then
        local d
        for d in "$STATE/pg-replica" "$STATE/pg-primary"; do
            if [ -s "$d/postmaster.pid" ]; then
                log "stopping postgres in $d"
                as_pg "$PG_BIN/pg_ctl" -D "$d" -m fast -w stop >&2 || true
            fi
        done
    fi
    if [ "${1:-}" = "--clean" ]; then
        log "removing $STATE"
        rm -rf "$STATE"
    fi
}

WITH_REPLICATED=
case "${1:-}" in
    --stop) stop_all "${2:-}"; exit 0 ;;
    --replicated) WITH_REPLICATED=1 ;;
    "") ;;
    *) die "usage: $0 [--replicated | --stop [--clean]]" ;;
esac

install_packages
PG_BIN="$(pg_bindir)" || die "PostgreSQL binaries not found"

mkdir -p "$STATE"
start_redis "$REDIS_PORT"
wait_for "redis" redis_up "$REDIS_PORT"
check_redis_settings "$REDIS_PORT"
start_redis "$REDIS_REPLICA_PORT" --replicaof 127.0.0.1 "$REDIS_PORT" --replica-read-only yes
wait_for "redis replica" redis_up "$REDIS_REPLICA_PORT"
wait_for "redis replica sync" redis_replica_synced "$REDIS_REPLICA_PORT"
check_redis_settings "$REDIS_REPLICA_PORT"
start_postgres

echo "export TRUNKKEY_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
echo "export TRUNKKEY_REDIS_REPLICA_URL=redis://127.0.0.1:$REDIS_REPLICA_PORT/0"
echo "export TRUNKKEY_POSTGRES_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
echo "export TRUNKKEY_POSTGRES_REPLICA_DSN=postgresql://postgres@127.0.0.1:$PG_REPLICA_PORT/$PG_DB"
if [ -n "$WITH_REPLICATED" ]; then
    # Prints the `export` lines: TRUNKKEY_REPLICATED_DIR (the tests attach there),
    # TRUNKKEY_POSTGRES_PAIR_DSN (both hosts, for libpq's failover), TRUNKKEY_REDIS_CLUSTER_URL.
    replicated start --pg-ports "$PG_PAIR_PORTS" --redis-ports "$REDIS_CLUSTER_PORTS" \
        --redis-bus-ports "$REDIS_CLUSTER_BUS_PORTS"
fi
