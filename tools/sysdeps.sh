#!/usr/bin/env bash
# Installs the system programs the tests use, when they are missing: `make test` runs this first.
#   prometheus         the scrape test of every process's /metrics
#   chromium           the viewer's browser tests (driven by Playwright; no browser is downloaded)
#   etcd               the coordination store of replicated clusters
#   nginx              the load balancer in front of gateways on several hosts
#   logger, ip         syslog intake tests (util-linux) and the network-namespace hosts (iproute2)
#   node, npm          the Loki intake tests' JavaScript clients (winston-loki, pino-loki)
# Installs with apt-get as root or through passwordless sudo; otherwise stops at once with one
# line naming the command to run. Prints nothing when everything is there.
set -euo pipefail

declare -A package=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [chromium]=chromium
    [etcd]=etcd-server
    [nginx]=nginx
    [logger]=bsdutils
    [ip]=iproute2
    [node]=nodejs
    [npm]=npm
)
missing=()
for program in "${!package[@]}"; do
    if ! command -v "$program" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$program" ]; then
        missing+=("${package[$program]}")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0
# one of each, in a stable order
mapfile -t missing < <(printf '%s\n' "${missing[@]}" fonts-dejavu-core | sort -u)

if [ "$(id -u)" = "0" ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "sysdeps: missing system packages; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "sysdeps: missing system packages (${missing[*]}) and no apt-get here: install them with your package manager" >&2
    exit 1
fi

echo "sysdeps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q >&2
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
# Debian's packages start their services where an init system runs: the tests start their own.
for service in nginx etcd prometheus; do
    "${SUDO[@]}" sh -c "command -v service >/dev/null && service $service stop" >/dev/null 2>&1 || true
done
