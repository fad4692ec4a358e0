#!/usr/bin/env bash
# The whole test suite (the README's test command): unit, property, scenario
# and black-box tests of every crate, then the black-box MQTT conformance
# runner (../shared/conformance.py) against the real ringmq binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
bash tests/run-conformance.sh
