#!/usr/bin/env bash
# Command 2 of the README: install and start what the tests need, run the whole suite.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bootstrap.sh"
exec node --import tsx scripts/run-tests.ts "$@"
