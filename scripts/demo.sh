#!/usr/bin/env bash
# Quick start: ami-guard's real daemon bans a recorded real attack (see scripts/demo.ts). Needs root for the private
# network namespace in which nft runs; installs nftables (and uses redis-server if present) on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "run as root (sudo): the demo creates a private network namespace for nft" >&2
  exit 1
fi
missing=()
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
exec node dist/scripts/demo.js "$@"
