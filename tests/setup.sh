#!/usr/bin/env bash
# Prepare a Debian 12 machine for vanthu's demo and tests, idempotently:
#  - Debian packages: dovecot-imapd (the real IMAP server the demo and the tests start on
#    loopback), openssl (its throwaway certificate), python3-venv (to hold uv),
#    fonts-dejavu-core (Vietnamese glyphs for the PDFs vanthu prints), poppler-utils (the
#    tests render a printed register page to check it), tesseract-ocr with its Vietnamese data
#    (OCR of scanned documents), postgresql (the tests start private servers of their own on
#    loopback to run the database tests on PostgreSQL too);
#  - uv in .tools/, then the project's environment from uv.lock (.venv/), compiled to
#    bytecode with vanthu's own modules: a Python started where .pyc files cannot be written
#    (PYTHONDONTWRITEBYTECODE, a read-only install) would otherwise compile every module at
#    every start, about 4 s of the daemon's start on 2 cores instead of about 1 s.
# Needs root or sudo only when a Debian package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /usr/sbin/dovecot ] || packages+=(dovecot-imapd)
command -v openssl >/dev/null || packages+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || packages+=(fonts-dejavu-core)
command -v pdftoppm >/dev/null || packages+=(poppler-utils)
command -v tesseract >/dev/null || packages+=(tesseract-ocr)
ls /usr/share/tesseract-ocr/*/tessdata/vie.traineddata >/dev/null 2>&1 || packages+=(tesseract-ocr-vie)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
  # vanthu starts its own Dovecot instances on free loopback ports; the system-wide
  # service the package may have started is not needed.
  if [[ " ${packages[*]} " == *" dovecot-imapd "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now dovecot >/dev/null 2>&1 || true
  fi
  if [[ " ${packages[*]} " == *" postgresql "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
fi

if [ ! -x .tools/bin/uv ]; then
  python3 -m venv .tools
  .tools/bin/pip install --quiet --disable-pip-version-check uv
fi
.tools/bin/uv sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 daemon tests >/dev/null
