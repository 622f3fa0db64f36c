#!/usr/bin/env bash
# Side-by-side benchmark of ferry (issue 7): ferry, rclone mount
# (--vfs-cache-mode full), a minimal go-fuse file system serving memory
# (bench/fusebound) and plain curl, on the same data served by nginx on
# 127.0.0.1. Prints a markdown report and writes it to
# bench/results-YYYY-MM-DD.md.
#
#   sudo bench/run.sh [driver flags]       e.g. -rounds 5, -figures 1,3, -tools ferry,curl
#   sudo bench/run.sh serve                only generate and serve the data (for
#                                          bench/profile); Ctrl-C stops
#
# Needs root (mounts, /proc/sys/vm/drop_caches, /sys/class/bdi), Go, about
# 1.2 GiB of free memory for the tmpfs origin and 3 GiB of disk under
# ${TMPDIR:-/tmp}. Installs nginx, rclone, fio, fuse3 and curl from the
# distribution's packages when missing. Everything it starts is stopped by
# PID and every mount it made is unmounted at exit, also on failure or
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: run as root (mounts, drop_caches, read_ahead_kb)" >&2
	exit 1
fi

# --- tools ---------------------------------------------------------------
need=()
for pair in nginx:nginx rclone:rclone fio:fio fusermount3:fuse3 curl:curl; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- scratch space and cleanup ---------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/ferrybench.XXXXXX") # mountpoints, caches (disk)
data=$(mktemp -d /dev/shm/ferrybench.XXXXXX)          # the origin's files (tmpfs)
chmod 755 "$work" "$data"
nginx_pid=""
driver_pid=""
reporting=/sys/module/page_reporting/parameters/page_reporting_order
reporting_was=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true
		for _ in $(seq 60); do kill -0 "$driver_pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$driver_pid" 2>/dev/null || true
	fi
	# Whatever is still mounted under the scratch directory (deepest first).
	awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	if [ -n "$nginx_pid" ]; then
		kill -TERM "$nginx_pid" 2>/dev/null || true
		wait "$nginx_pid" 2>/dev/null || true
	fi
	rm -rf "$data"
	if [ -n "$reporting_was" ]; then
		echo "$reporting_was" >"$reporting" || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "bench: kept $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---------------------------------------------------------------
bin="$work/bin"
mkdir -p "$bin"
echo "bench: building" >&2
go build -o "$bin/ferry" ./cmd/ferry
go build -o "$bin/fusebound" ./bench/fusebound
go build -o "$bin/driver" ./bench/driver
go build -o "$bin/gen" ./bench/gen

# --- memory --------------------------------------------------------------
# This kind of VM reports free memory to its host (virtio_balloon free page
# reporting), which takes it back; the first write into such a page then
# costs a fault in the host. 1 GiB written into a new file took 3.4–4.6 s
# that way and 0.26–0.28 s with reporting paused. That cost lands on
# whichever tool writes new pages while it runs (ferry and rclone write
# their caches, curl -o /dev/null does not), and on the first tool of a
# round. So reporting is paused for the run (page_reporting_order above the
# largest order: nothing qualifies) and restored at exit; the report says
# so. FERRY_BENCH_PAGE_REPORTING=keep leaves it as it is.
if [ "${FERRY_BENCH_PAGE_REPORTING:-pause}" = pause ] && [ -w "$reporting" ]; then
	reporting_was=$(cat "$reporting")
	echo "bench: pausing free page reporting to the host until exit ($reporting: $reporting_was -> 11)" >&2
	echo 11 >"$reporting"
fi

# --- origin ----------------------------------------------------------------
port=${FERRY_BENCH_PORT:-18080}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
	port=$((port + 1)) # in use
done
base="http://127.0.0.1:$port"

echo "bench: generating data in $data and manifests in $work/manifests" >&2
"$bin/gen" -data "$data" -manifests "$work/manifests" -base "$base"

ngx="$work/nginx"
mkdir -p "$ngx/logs" "$ngx/tmp"
cat >"$ngx/nginx.conf" <<EOF
worker_processes auto;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    log_format bytes '\$body_bytes_sent';
    access_log $ngx/logs/access.log bytes;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $data;
        autoindex on;   # rclone's http backend lists directories
    }
}
EOF
nginx -p "$ngx" -c "$ngx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 100); do
	curl -sf -o /dev/null -r 0-0 "$base/big.bin" && break
	kill -0 "$nginx_pid" 2>/dev/null || { cat "$ngx/logs/error.log" >&2; exit 1; }
	sleep 0.1
done
curl -sf -o /dev/null -r 0-0 "$base/big.bin"

if [ "${1:-}" = serve ]; then
	echo "bench: serving $data at $base; manifests in $work/manifests; Ctrl-C stops" >&2
	wait "$nginx_pid"
	exit 0
fi

# --- measure -------------------------------------------------------------
out="$repo/bench/results-$(date -u +%F).md"
"$bin/driver" -work "$work" -data "$data" -manifests "$work/manifests" -base "$base" \
	-access-log "$ngx/logs/access.log" -ferry "$bin/ferry" -fusebound "$bin/fusebound" \
	-out "$out" "$@" &
driver_pid=$!
wait "$driver_pid"
