#!/usr/bin/env bash
# fuzz.sh - run every Fuzz* target of the module, one at a time, each for
# FUZZTIME (default 1m). Targets are discovered with
# `go test -list '^Fuzz' ./...`.
#
# Environment: GO (default go), FUZZTIME (default 1m).
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}

cd "$(dirname "$0")/.."

listing=$("$GO" test -list '^Fuzz' ./...) || {
	printf '%s\n' "$listing" >&2
	echo "fuzz: listing the fuzz targets failed" >&2
	exit 1
}

# go test -list prints a package's matching names, then a line
# "ok  <package> <time>" (or "?  <package> [no test files]").
targets=()
names=()
while IFS= read -r line; do
	case $line in
	Fuzz*) names+=("$line") ;;
	ok$'\t'* | '?'$'\t'* | ok\ * | '?'\ *)
		pkg=$(awk '{print $2}' <<<"$line")
		for name in "${names[@]}"; do
			targets+=("$pkg $name")
		done
		names=()
		;;
	esac
done <<<"$listing"

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no Fuzz targets found"
	exit 0
fi

echo "fuzz: ${#targets[@]} target(s), ${FUZZTIME} each"
failed=()
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	echo "=== fuzz $pkg $name (fuzztime $FUZZTIME)"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s "$pkg"; then
		failed+=("$pkg $name")
	fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
	echo "fuzz: FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) passed"
