#!/bin/sh
# Regenerates the known-answer vectors in this directory with the openssl CLI.
# Run from this directory: sh gen.sh
set -eu

# plain N: the test plaintext of N bytes, byte i = (i*131 + (i>>10)) mod 256.
plain() {
	python3 -c 'import sys; n=int(sys.argv[1]); sys.stdout.buffer.write(bytes((i*131 + (i>>10)) & 0xff for i in range(n)))' "$1"
}

# vec SIZE SALT PASS: writes vec-SIZE.enc, openssl's encryption of the plaintext.
# OpenSSL 3 omits the "Salted__" header when the salt is given with -S, so it is
# written first, as the tool itself writes it for a random salt.
vec() {
	{
		printf 'Salted__'
		python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))' "$2"
		plain "$1" | openssl enc -aes-256-cbc -md sha1 -S "$2" -pass "pass:$3" 2>/dev/null
	} > "vec-$1.enc"
}

P1='TestPass-Abc123'
P2='5oZuQxW0QCvYsm2C1OyJwrWgFNT1MKNfNs0DUm5SW6+QkYj8Kr1GrUcUKh7/3lgH'

vec 0       0102030405060708 "$P1"
vec 1       a1a2a3a4a5a6a7a8 "$P1"
vec 15      0011223344556677 "$P2"
vec 16      8899aabbccddeeff "$P2"
vec 17      deadbeefcafebabe "$P1"
vec 1048579 492d162c3e3409f5 "$P2"

# Key and IV for the worked example in pgbackrest-format.md section 6.1.
openssl enc -aes-256-cbc -md sha1 -S 0102030405060708 -pass "pass:$P1" -P > derive.txt
