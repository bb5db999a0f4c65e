package cipher

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SHA-1 is what pgBackRest's EVP_BytesToKey call uses; required for compatibility.
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// Format constants of the OpenSSL salted format that pgBackRest writes.
const (
	// Magic is the 8-byte marker that starts every encrypted object.
	Magic = "Salted__"
	// SaltSize is the length of the random salt that follows Magic.
	SaltSize = 8
	// HeaderSize is the length of Magic plus the salt.
	HeaderSize = len(Magic) + SaltSize
	// BlockSize is the AES block size; the ciphertext after the header is a
	// non-empty multiple of it.
	BlockSize = aes.BlockSize
	// KeySize is the AES-256 key length.
	KeySize = 32
	// Overhead is the largest number of bytes encryption adds to a plaintext:
	// the header plus one full padding block.
	Overhead = HeaderSize + BlockSize

	// passphraseEntropy is the number of random bytes in a generated
	// sub-passphrase (pgBackRest cipherPassGen: 48 bytes, giving 64 base64
	// characters).
	passphraseEntropy = 48
	// batchSize is how much data the streams encrypt or decrypt per call into
	// the block cipher and per write to the underlying writer.
	batchSize = 64 << 10
)

// Sentinel errors. Callers test them with errors.Is; the repository layer adds
// which repository and object the error is about.
var (
	// ErrWrongPassphrase reports that the last block did not decrypt to valid
	// PKCS#7 padding. That is the symptom of a wrong passphrase; a damaged last
	// block produces it too. A wrong passphrase goes unnoticed by the padding
	// check about once in 256 objects (the output is then garbage), so callers
	// should also verify checksums.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrNotEncrypted reports input that does not start with "Salted__": a
	// plain object in an encrypted repository, or a repository that is not
	// encrypted.
	ErrNotEncrypted = errors.New(`not encrypted (missing "Salted__" header)`)
	// ErrTruncated reports ciphertext that is shorter than the header plus one
	// block or is not a whole number of blocks.
	ErrTruncated = errors.New("truncated ciphertext")
	// ErrEmptyPassphrase reports an empty passphrase, which pgBackRest never
	// accepts.
	ErrEmptyPassphrase = errors.New("empty passphrase")
	// errClosed reports a Write or Close after the stream was closed.
	errClosed = errors.New("encrypter already closed")
)

// IsEncrypted reports whether prefix, the first bytes of an object, starts
// with the "Salted__" magic. It returns false when prefix is shorter than the
// magic.
func IsEncrypted(prefix []byte) bool {
	return len(prefix) >= len(Magic) && string(prefix[:len(Magic)]) == Magic
}

// NewPassphrase returns a new random sub-passphrase in the form pgBackRest's
// cipherPassGen generates for archive.info, backup.info and manifests: 48
// bytes from crypto/rand encoded as standard base64 (with padding), which
// gives 64 characters. The string itself, not its decoded bytes, is the
// passphrase.
func NewPassphrase() (string, error) {
	var b [passphraseEntropy]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("generate passphrase: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// deriveKey computes the AES-256 key and CBC IV from the passphrase and salt
// the way OpenSSL's EVP_BytesToKey(EVP_aes_256_cbc(), EVP_sha1(), salt, pass,
// count=1) does: D1 = SHA1(pass|salt), Di = SHA1(Di-1|pass|salt), and the
// concatenation D1|D2|D3 supplies the 32 key bytes followed by the 16 IV bytes.
func deriveKey(pass, salt []byte) (key [KeySize]byte, iv [BlockSize]byte) {
	var out [3 * sha1.Size]byte // 60 bytes, 48 needed
	var prev []byte
	h := sha1.New()
	for i := 0; i*sha1.Size < KeySize+BlockSize; i++ {
		h.Reset()
		h.Write(prev)
		h.Write(pass)
		h.Write(salt)
		prev = h.Sum(out[i*sha1.Size : i*sha1.Size])
	}
	copy(key[:], out[:KeySize])
	copy(iv[:], out[KeySize:KeySize+BlockSize])
	return key, iv
}

// Encrypt returns the encryption of plaintext under pass with a new random
// salt. It is a convenience for small objects such as info files; use
// NewEncrypter for streams.
func Encrypt(plaintext, pass []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plaintext) + Overhead)
	w, err := NewEncrypter(&buf, pass)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decrypt returns the decryption of ciphertext under pass. It is a
// convenience for small objects such as info files; use NewDecrypter for
// streams. Errors are those of NewDecrypter's reader.
func Decrypt(ciphertext, pass []byte) ([]byte, error) {
	r, err := NewDecrypter(bytes.NewReader(ciphertext), pass)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, max(len(ciphertext)-HeaderSize, 0))
	buf := bytes.NewBuffer(out)
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
