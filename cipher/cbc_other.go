//go:build !amd64 || purego

package cipher

// newCBC returns the standard library's AES-256-CBC for key and iv: the
// assembly of cbc_amd64.s is amd64 only.
func newCBC(key *[KeySize]byte, iv [BlockSize]byte, decrypt bool) (cbcMode, error) {
	return newCBCStd(key, iv, decrypt)
}
