#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root): the apt packages, then the npm dependencies.
# The tests start their own redis-server processes on free ports and their own network namespaces for nft;
# nothing on the host (a running Redis, the host's ruleset) is used or touched.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nft >/dev/null || missing+=(nftables)
# the daemon's persistent nft writer runs on Debian's python3 (not a python3 earlier in PATH) with libnftables1
[[ -x /usr/bin/python3 ]] || missing+=(python3)
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v conntrack >/dev/null || missing+=(conntrack) # a test checks a ban also stops a flow conntrack holds
command -v docker-compose >/dev/null || missing+=(docker-compose) # validates docker-compose.yml; no engine needed
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]} (run as root, or: apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node -e 'if (+process.versions.node.split(".")[0] < 20) { console.error("Node.js >= 20 is required, found " + process.version); process.exit(1) }'

npm ci --no-audit --no-fund
