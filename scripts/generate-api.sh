#!/usr/bin/env bash
# Generates the local API's Swift types and client from openapi.yaml with apple/swift-openapi-generator,
# into Sources/QuotaMeshAPI/Generated (committed, so a build needs no generator).
#
#   bash scripts/generate-api.sh           regenerate
#   bash scripts/generate-api.sh --check   regenerate into a temporary folder and fail if it differs from
#                                          what is committed (CI: openapi.yaml is the single source)
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: bash scripts/generate-api.sh [--check]" >&2; exit 64 ;;
esac

# The generator, built once into .build-openapi-generator from a package that only depends on it.
tool=.build-openapi-generator
if [[ ! -x $tool/.build/debug/swift-openapi-generator ]]; then
    mkdir -p "$tool"
    cat > "$tool/Package.swift" <<'SWIFT'
// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "OpenAPIGeneratorTool",
    dependencies: [.package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3")],
    targets: [.target(name: "Placeholder", path: "Placeholder")]
)
SWIFT
    mkdir -p "$tool/Placeholder" && echo "// The generator is built from this package's dependency." > "$tool/Placeholder/Placeholder.swift"
    echo "generate-api: building swift-openapi-generator (about a minute and a half)" >&2
    swift build --package-path "$tool" --product swift-openapi-generator 2>&1 | tail -1 >&2
fi

out=Sources/QuotaMeshAPI/Generated
target=$out
[[ $check == 1 ]] && target=$(mktemp -d)
log=$(mktemp)
"$tool/.build/debug/swift-openapi-generator" generate openapi.yaml \
    --config Sources/QuotaMeshAPI/openapi-generator-config.yaml --output-directory "$target" >/dev/null 2>"$log" \
    || { cat "$log" >&2; exit 1; }
grep -i "^warning" "$log" >&2 || true
if [[ $check == 1 ]]; then
    if ! diff -r "$out" "$target" >/dev/null; then
        echo "generate-api: Sources/QuotaMeshAPI/Generated differs from what openapi.yaml generates; run bash scripts/generate-api.sh" >&2
        diff -r "$out" "$target" | head -40 >&2
        exit 1
    fi
    echo "generate-api: Sources/QuotaMeshAPI/Generated matches openapi.yaml"
fi
