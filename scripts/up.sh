#!/usr/bin/env bash
# Command 1 of the README: bring the whole platform up on embedded defaults. Ctrl-C stops everything.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bootstrap.sh"
exec node --import tsx scripts/platform.ts "$@"
