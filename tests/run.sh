#!/usr/bin/env bash
# Set up everything a fresh Debian 12 machine needs, then lint, type-check and run every test.
# Installs Debian's dovecot-imapd (a real IMAP server for the tests) and uv (the Python
# environment, from uv.lock) when they are missing. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /usr/sbin/dovecot ] || packages+=(dovecot-imapd)
command -v openssl >/dev/null || packages+=(openssl)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if command -v uv >/dev/null; then
  uv=(uv)
else
  python3 -m pip install --quiet --disable-pip-version-check uv
  uv=(python3 -m uv)
fi

"${uv[@]}" sync --frozen --quiet
"${uv[@]}" run --frozen ruff check daemon tests
"${uv[@]}" run --frozen mypy
"${uv[@]}" run --frozen pytest "$@"
