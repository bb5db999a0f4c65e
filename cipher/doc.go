// Package cipher implements the encryption pgBackRest uses for repositories with
// repo-cipher-type=aes-256-cbc, byte for byte.
//
// Every encrypted object is in the salted format of the OpenSSL "enc" command:
//
//	"Salted__" | 8-byte random salt | AES-256-CBC ciphertext of the PKCS#7-padded plaintext
//
// The key and IV come from EVP_BytesToKey with SHA-1 and one iteration over the
// passphrase bytes and the salt (not PBKDF2), exactly as pgBackRest's
// src/common/crypto/cipherBlock.c calls it. An object written here can therefore be
// read by pgBackRest and by
//
//	openssl enc -d -aes-256-cbc -md sha1 -pass pass:<passphrase>
//
// and vice versa. Passphrases are used as the raw bytes of the configured string:
// the repository passphrase for archive.info and backup.info, and the 64-character
// base64 sub-passphrases (see [NewPassphrase]) as text, never base64-decoded.
//
// The format carries no MAC, so it cannot detect tampering in general (pgBackRest
// checks integrity with the SHA-1 stored in the manifest or the WAL file name
// instead). What can be detected is reported with sentinel errors:
// [ErrNotEncrypted] for a missing header, [ErrTruncated] for a length that is not a
// whole number of blocks, and [ErrWrongPassphrase] for invalid padding in the last
// block, which is what a wrong passphrase (or a damaged last block) produces in all
// but about 1 in 256 cases.
//
// Encryption and decryption stream with bounded memory (about 64 KiB per stream)
// and process data in large batches.
package cipher
