#!/usr/bin/env bash
# Install the Debian packages behind contrastkit's embedded demo data (idempotent).
#
#   diatheke        command-line reader of SWORD Bible modules
#   sword-text-kjv  King James Version (1769)   - public domain
#   sword-text-web  World English Bible         - public domain
#   wordnet-base    WordNet 3.0 data files (synonym substitution view, wordnet corpus)
#   chromium        headless browser: the test that renders the HTML evaluation report
#
# `contrastkit demo` pairs each KJV verse with its WEB verse (natural paraphrases).
# Usage: sudo scripts/install_system_deps.sh   (does nothing when all are installed)
set -euo pipefail

PACKAGES=(diatheke sword-text-kjv sword-text-web wordnet-base chromium)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_system_deps: all present (${PACKAGES[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: apt-get not found; install these packages with your system's package manager: ${missing[*]}" >&2
    echo "install_system_deps: skipping (the demo needs them; tests that need them skip)" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "install_system_deps: not root and no password-less sudo; run as root:" >&2
        echo "    apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "install_system_deps: skipping" >&2
        exit 0
    fi
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
echo "install_system_deps: done"
