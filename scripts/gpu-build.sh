#!/usr/bin/env bash
# Build what a GPU device check carries into .gpu/ (stripped, under 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu' .git/info/exclude 2>/dev/null || echo '/.gpu' >> .git/info/exclude
cargo build --release --features cuda --example llm_energy
cargo build --release -p lem --features cli --bin lem
rm -rf .gpu && mkdir -p .gpu/tests
cp target/release/examples/llm_energy target/release/lem .gpu/
for t in $(cargo test --release -p lem --test gpu --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4); do cp "$t" .gpu/tests/; done
strip .gpu/llm_energy .gpu/lem .gpu/tests/* || true
du -sh .gpu
