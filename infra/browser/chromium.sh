#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/browser/, driven by Playwright
# for Python with executable_path; Playwright's own browser download is not used).
# Idempotent: does nothing when a chromium is already on the PATH.
#   bash infra/browser/chromium.sh install     install it (apt-get, as root or with sudo)
#   bash infra/browser/chromium.sh path        print the executable
set -euo pipefail

find_chromium() {
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    done
    return 1
}

case "${1:-install}" in
    install)
        if find_chromium >/dev/null; then exit 0; fi
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "infra/browser/chromium.sh: no apt-get here; install chromium with your package manager" >&2
            exit 1
        fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
        find_chromium >/dev/null
        ;;
    path)
        find_chromium
        ;;
    *)
        echo "usage: $0 install|path" >&2; exit 2 ;;
esac
