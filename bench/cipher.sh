#!/bin/sh
# Compares the AES-256-CBC throughput of package cipher (Go) with OpenSSL's.
#
# Runs BenchmarkEncrypt and BenchmarkDecrypt (4 MiB buffers) and
# `openssl speed -evp aes-256-cbc -bytes 16384` for both directions, and prints
# MB/s (10^6 bytes/s) and the ratio Go/OpenSSL. CBC encryption is serial and
# decryption parallel, so the two directions are compared separately.
#
# Usage: bench/cipher.sh            (from anywhere in the repository)
# Env:   BENCHTIME (go test -benchtime, default 2s), COUNT (runs, best taken,
#        default 3), OPENSSL_SECONDS (per direction, default 3).
set -eu

cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-3}
OPENSSL_SECONDS=${OPENSSL_SECONDS:-3}

command -v openssl >/dev/null 2>&1 || { echo "cipher.sh: openssl not found" >&2; exit 1; }

gobench=$(go test -run '^$' -bench '^Benchmark(Encrypt|Decrypt)$' -benchtime "$BENCHTIME" -count "$COUNT" ./cipher/)

# best NAME: highest MB/s over the runs of benchmark NAME.
best() {
	echo "$gobench" | awk -v name="$1" '
		$1 ~ "^" name "(-[0-9]+)?$" { for (i = 2; i <= NF; i++) if ($i == "MB/s" && $(i-1) > m) m = $(i-1) }
		END { if (m == "") exit 1; printf "%.1f\n", m }'
}

# ossl [FLAG]: OpenSSL's MB/s for 16 KiB blocks (it reports 1000s of bytes/s).
ossl() {
	openssl speed "$@" -evp aes-256-cbc -bytes 16384 -seconds "$OPENSSL_SECONDS" 2>/dev/null |
		awk '$1 == "AES-256-CBC" { v = $2; sub(/k$/, "", v); printf "%.1f\n", v / 1000 }'
}

go_enc=$(best BenchmarkEncrypt)
go_dec=$(best BenchmarkDecrypt)
ossl_enc=$(ossl)
ossl_dec=$(ossl -decrypt)

printf '%-10s %12s %12s %10s\n' direction "go MB/s" "openssl MB/s" "go/openssl"
printf '%-10s %12s %12s %10s\n' encrypt "$go_enc" "$ossl_enc" "$(awk -v a="$go_enc" -v b="$ossl_enc" 'BEGIN { printf "%.2f", a / b }')"
printf '%-10s %12s %12s %10s\n' decrypt "$go_dec" "$ossl_dec" "$(awk -v a="$go_dec" -v b="$ossl_dec" 'BEGIN { printf "%.2f", a / b }')"
echo "($(go version | cut -d' ' -f3), $(openssl version | cut -d' ' -f1-2), $(nproc) CPUs; load $(cut -d' ' -f1 /proc/loadavg))"
