//go:build amd64 && !purego

package cipher

import (
	"golang.org/x/sys/cpu"
)

// On amd64 with AES-NI, AES-256-CBC runs in assembly (cbc_amd64.s): the
// standard library decrypts CBC one block per call, which leaves the AES unit
// idle between the dependent rounds of a single block. CBC decryption has no
// dependency between blocks, so the assembly decrypts eight blocks at a time,
// interleaved, and reaches the throughput of OpenSSL; encryption is serial by
// nature but saves the per-block call overhead.

// roundKeys is an expanded AES-256 key: 15 round keys of 16 bytes in the byte
// order AES-NI loads them (FIPS-197 word order, each word big-endian).
type roundKeys [aesRounds + 1][BlockSize]byte

const aesRounds = 14

// cbcEncryptAsm encrypts n bytes (a multiple of BlockSize) from src to dst in
// CBC mode with the encryption schedule xk and updates iv to the last
// ciphertext block.
//
//go:noescape
func cbcEncryptAsm(xk *roundKeys, iv *[BlockSize]byte, dst, src *byte, n int)

// cbcDecryptAsm decrypts n bytes (a multiple of BlockSize) from src to dst
// (which may be the same memory, not otherwise overlapping) in CBC mode with
// the decryption schedule xk (equivalent inverse cipher) and updates iv to the
// last ciphertext block.
//
//go:noescape
func cbcDecryptAsm(xk *roundKeys, iv *[BlockSize]byte, dst, src *byte, n int)

// aesIMC applies InvMixColumns to one round key in place (AESIMC).
//
//go:noescape
func aesIMC(rk *[BlockSize]byte)

// cbcNI is a [crypto/cipher.BlockMode] on the assembly routines.
type cbcNI struct {
	xk      roundKeys
	iv      [BlockSize]byte
	decrypt bool
}

func (c *cbcNI) BlockSize() int { return BlockSize }

// CryptBlocks encrypts or decrypts src into dst. Like the standard library's
// CBC modes it panics when src is not a whole number of blocks or dst is
// shorter than src: both are programming errors.
func (c *cbcNI) CryptBlocks(dst, src []byte) {
	if len(src)%BlockSize != 0 {
		panic("cipher: input not full blocks")
	}
	if len(dst) < len(src) {
		panic("cipher: output smaller than input")
	}
	if len(src) == 0 {
		return
	}
	if c.decrypt {
		cbcDecryptAsm(&c.xk, &c.iv, &dst[0], &src[0], len(src))
	} else {
		cbcEncryptAsm(&c.xk, &c.iv, &dst[0], &src[0], len(src))
	}
}

// hasAESNI reports whether the assembly can run on this CPU.
func hasAESNI() bool { return cpu.X86.HasAES && cpu.X86.HasSSE2 }

// newCBC returns an AES-256-CBC [crypto/cipher.BlockMode] for key and iv: the
// assembly one when the CPU has AES-NI, else the standard library's.
func newCBC(key *[KeySize]byte, iv [BlockSize]byte, decrypt bool) (cbcMode, error) {
	if !hasAESNI() {
		return newCBCStd(key, iv, decrypt)
	}
	c := &cbcNI{iv: iv, decrypt: decrypt}
	expandKey256(key, &c.xk)
	if decrypt {
		invertSchedule(&c.xk)
	}
	return c, nil
}

// sbox is the AES S-box (FIPS-197 figure 7).
const sbox = "" +
	"\x63\x7c\x77\x7b\xf2\x6b\x6f\xc5\x30\x01\x67\x2b\xfe\xd7\xab\x76" +
	"\xca\x82\xc9\x7d\xfa\x59\x47\xf0\xad\xd4\xa2\xaf\x9c\xa4\x72\xc0" +
	"\xb7\xfd\x93\x26\x36\x3f\xf7\xcc\x34\xa5\xe5\xf1\x71\xd8\x31\x15" +
	"\x04\xc7\x23\xc3\x18\x96\x05\x9a\x07\x12\x80\xe2\xeb\x27\xb2\x75" +
	"\x09\x83\x2c\x1a\x1b\x6e\x5a\xa0\x52\x3b\xd6\xb3\x29\xe3\x2f\x84" +
	"\x53\xd1\x00\xed\x20\xfc\xb1\x5b\x6a\xcb\xbe\x39\x4a\x4c\x58\xcf" +
	"\xd0\xef\xaa\xfb\x43\x4d\x33\x85\x45\xf9\x02\x7f\x50\x3c\x9f\xa8" +
	"\x51\xa3\x40\x8f\x92\x9d\x38\xf5\xbc\xb6\xda\x21\x10\xff\xf3\xd2" +
	"\xcd\x0c\x13\xec\x5f\x97\x44\x17\xc4\xa7\x7e\x3d\x64\x5d\x19\x73" +
	"\x60\x81\x4f\xdc\x22\x2a\x90\x88\x46\xee\xb8\x14\xde\x5e\x0b\xdb" +
	"\xe0\x32\x3a\x0a\x49\x06\x24\x5c\xc2\xd3\xac\x62\x91\x95\xe4\x79" +
	"\xe7\xc8\x37\x6d\x8d\xd5\x4e\xa9\x6c\x56\xf4\xea\x65\x7a\xae\x08" +
	"\xba\x78\x25\x2e\x1c\xa6\xb4\xc6\xe8\xdd\x74\x1f\x4b\xbd\x8b\x8a" +
	"\x70\x3e\xb5\x66\x48\x03\xf6\x0e\x61\x35\x57\xb9\x86\xc1\x1d\x9e" +
	"\xe1\xf8\x98\x11\x69\xd9\x8e\x94\x9b\x1e\x87\xe9\xce\x55\x28\xdf" +
	"\x8c\xa1\x89\x0d\xbf\xe6\x42\x68\x41\x99\x2d\x0f\xb0\x54\xbb\x16"

// expandKey256 computes the AES-256 encryption key schedule (FIPS-197 5.2).
func expandKey256(key *[KeySize]byte, xk *roundKeys) {
	var w [4 * (aesRounds + 1)][4]byte
	for i := range 8 {
		copy(w[i][:], key[4*i:4*i+4])
	}
	rcon := byte(1)
	for i := 8; i < len(w); i++ {
		t := w[i-1]
		switch i % 8 {
		case 0:
			t = [4]byte{sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]}
			rcon = gfDouble(rcon)
		case 4:
			t = [4]byte{sbox[t[0]], sbox[t[1]], sbox[t[2]], sbox[t[3]]}
		}
		for j := range 4 {
			w[i][j] = w[i-8][j] ^ t[j]
		}
	}
	for r := range xk {
		for c := range 4 {
			copy(xk[r][4*c:], w[4*r+c][:])
		}
	}
}

// invertSchedule turns an encryption schedule into the decryption schedule
// of the equivalent inverse cipher (FIPS-197 5.3.5) that AESDEC expects: the
// round keys in reverse order, InvMixColumns applied to all but the first and
// the last.
func invertSchedule(xk *roundKeys) {
	for i, j := 0, aesRounds; i < j; i, j = i+1, j-1 {
		xk[i], xk[j] = xk[j], xk[i]
	}
	for r := 1; r < aesRounds; r++ {
		aesIMC(&xk[r])
	}
}

// gfDouble multiplies by x in AES's GF(2^8).
func gfDouble(a byte) byte {
	if a&0x80 != 0 {
		return a<<1 ^ 0x1b
	}
	return a << 1
}
