package cipher

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
)

// newCBCStd is the portable AES-256-CBC of the standard library.
func newCBCStd(key *[KeySize]byte, iv [BlockSize]byte, decrypt bool) (cbcMode, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	if decrypt {
		return stdcipher.NewCBCDecrypter(block, iv[:]), nil
	}
	return stdcipher.NewCBCEncrypter(block, iv[:]), nil
}

// cbcMode is what the encrypter and decrypter need of a CBC implementation.
type cbcMode = stdcipher.BlockMode
