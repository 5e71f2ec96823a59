# Sourced by up.sh and test.sh: checks Node, installs the few Debian packages we need when they are
# missing (as root, or with sudo), and installs the exact npm dependencies when the lockfile changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "Pepeunit TS needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "Missing Debian packages: ${missing[*]}. Install them (apt-get install ${missing[*]}) and retry." >&2; exit 1
    fi
  fi
  echo "Installing Debian packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# git for the repository registry; PostgreSQL binaries for a private cluster when no server is reachable
# (installed lazily by the launcher only if needed).
apt_install git ca-certificates
# A private Redis for the tests (scripts/run-tests.ts starts it on a free port; nothing on disk).
apt_install redis-server
# The operator install's tests (ansible/test): Debian's Ansible and ansible-lint, python3-apt for
# the apt module in check mode.
apt_install ansible ansible-lint python3-apt

stamp="node_modules/.pepeunit-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing npm dependencies (npm ci) ..."
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
