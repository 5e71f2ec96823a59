#!/bin/sh
# The real apply sequence on the nspawn host (README.md): fresh install, a second run, check
# mode, an upgrade to another release, a run after it, and the vendor roles in check mode.
# Usage: apply.sh <release ref> <upgrade ref>   (git refs of this repository)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ANSIBLE_DIR="$(cd "$HERE/../.." && pwd)"
REPO="$(cd "$ANSIBLE_DIR/.." && pwd)"
OUT=${OUT:-/tmp/pu-nspawn-runs}
mkdir -p "$OUT"
cd "$ANSIBLE_DIR"
export ANSIBLE_CONFIG="$ANSIBLE_DIR/ansible.cfg"
release() { git -C "$REPO" archive --format=tar.gz -o "/root/.pu-nspawn/pepeunit-$1.tar.gz" "$1"; }
play() { name=$1; shift; ansible-playbook -e @test/fixtures/vault.yml --vault-password-file test/fixtures/vault-password.txt site.yml "$@" > "$OUT/$name.log" 2>&1 || true; printf '%-28s %s\n' "$name" "$(grep -E '^pu-deb12 +:' "$OUT/$name.log")"; }
release "$1"; release "$2"
PU_RELEASE=$1 play 1-fresh-install -i test/inventories/nspawn
PU_RELEASE=$1 play 2-second-run -i test/inventories/nspawn
PU_RELEASE=$1 play 3-check-mode -i test/inventories/nspawn --check --diff
PU_RELEASE=$2 play 4-upgrade -i test/inventories/nspawn
PU_RELEASE=$2 play 5-after-upgrade -i test/inventories/nspawn
PU_RELEASE=$2 play 6-check-after-upgrade -i test/inventories/nspawn --check --diff
PU_RELEASE=$2 play 7-vendor-roles-check -i test/inventories/nspawn-vendor --check --diff
