# Shared by scripts/test, scripts/demo and scripts/bench. Source it; do not run it.
# Installs what is missing and runs a throwaway PostgreSQL cluster.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the project needs: the three C libraries, PostgreSQL, pkg-config, python venv.
ensure_system_packages() {
    local wanted=(libpq-dev libsecp256k1-dev libcurl4-openssl-dev postgresql pkg-config curl)
    local missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or apt-get install them)"
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null || die "swift is not on PATH (expected in /opt/swift/usr/bin)"
}

# Headless Chromium (Debian's package), for the dashboard's end-to-end test.
ensure_chromium() {
    command -v chromium >/dev/null && return
    [ "$(id -u)" = 0 ] || die "chromium is missing (run as root, or apt-get install chromium)"
    log "installing chromium (headless, for the dashboard test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    echo "$d"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_postgres DIR [extra postgres -c options...]
# Starts a new cluster in DIR on a free port and exports DATABASE_URL. initdb refuses to run
# as root, so as root the cluster belongs to the `postgres` user.
start_postgres() {
    local dir="$1"; shift
    local bindir port runas=()
    bindir=$(pg_bindir)
    port=$(free_port)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        chown postgres "$dir"
        runas=(runuser -u postgres --)
    fi
    "${runas[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
    for o in "$@"; do opts="$opts -c $o"; done
    "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
        || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
    PG_DIR="$dir"
    PG_RUNAS=("${runas[@]}")
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    log "PostgreSQL running on 127.0.0.1:$port (data in $dir/data)"
}

stop_postgres() {
    [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
    "${PG_RUNAS[@]}" "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# start_replica DIR: a streaming hot standby of the cluster start_postgres started, in DIR on a
# free port; exports REPLICA_URL. Analysts' long queries belong there, not on the primary,
# where they would hold back vacuum of the hot jobs table.
start_replica() {
    local dir="$1" bindir port primary_port
    bindir=$(pg_bindir)
    port=$(free_port)
    primary_port=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$DATABASE_URL")
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    # -c fast: a spread checkpoint made the backup wait minutes on an idle cluster.
    "${PG_RUNAS[@]}" "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" -R -X stream -c fast \
        >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; die "pg_basebackup failed"; }
    # A standby needs max_connections at least the primary's (start_postgres: 200).
    "${PG_RUNAS[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c hot_standby=on -c max_connections=200" -w -t 60 start >/dev/null \
        || { cat "$dir/postgres.log" >&2; die "the replica did not start"; }
    REPLICA_DIR="$dir"
    export REPLICA_URL="postgres://postgres@127.0.0.1:$port/postgres"
    log "hot standby of the test cluster on 127.0.0.1:$port (data in $dir/data)"
}

stop_replica() {
    [ -n "${REPLICA_DIR:-}" ] && [ -d "$REPLICA_DIR/data" ] || return 0
    "${PG_RUNAS[@]}" "$(pg_bindir)/pg_ctl" -D "$REPLICA_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
}
