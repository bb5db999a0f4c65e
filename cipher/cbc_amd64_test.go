//go:build amd64 && !purego

package cipher

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
)

// TestCBCAssemblyMatchesStdlib checks the AES-NI CBC against the standard
// library's for random keys and IVs, every length from 0 to 40 blocks (the
// eight-block loop, its tail and both together), in several calls that carry
// the IV, in place and not.
func TestCBCAssemblyMatchesStdlib(t *testing.T) {
	if !hasAESNI() {
		t.Skip("no AES-NI on this CPU: the assembly is never used here")
	}
	for trial := range 20 {
		var key [KeySize]byte
		var iv [BlockSize]byte
		rand.Read(key[:])
		rand.Read(iv[:])
		for blocks := 0; blocks <= 40; blocks++ {
			plain := make([]byte, blocks*BlockSize)
			rand.Read(plain)
			split := (trial * 7 % (blocks + 1)) * BlockSize // one call boundary
			name := fmt.Sprintf("trial %d, %d blocks split at %d", trial, blocks, split)

			want := cryptAll(t, mustCBC(t, newCBCStd, &key, iv, false), plain, split, false)
			got := cryptAll(t, mustCBC(t, newCBC, &key, iv, false), plain, split, trial%2 == 0)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: encryption differs from crypto/aes", name)
			}
			back := cryptAll(t, mustCBC(t, newCBC, &key, iv, true), want, split, trial%2 == 1)
			if !bytes.Equal(back, plain) {
				t.Fatalf("%s: decryption does not give the plaintext back", name)
			}
		}
	}
}

func mustCBC(t *testing.T, f func(*[KeySize]byte, [BlockSize]byte, bool) (cbcMode, error), key *[KeySize]byte, iv [BlockSize]byte, decrypt bool) cbcMode {
	t.Helper()
	m, err := f(key, iv, decrypt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cryptAll runs m over in, in two calls split at split bytes, in place or
// into a new buffer.
func cryptAll(t *testing.T, m cbcMode, in []byte, split int, inPlace bool) []byte {
	t.Helper()
	out := make([]byte, len(in))
	src := in
	if inPlace {
		copy(out, in)
		src = out
	}
	m.CryptBlocks(out[:split], src[:split])
	m.CryptBlocks(out[split:], src[split:])
	return out
}

func BenchmarkCBC(b *testing.B) {
	var key [KeySize]byte
	var iv [BlockSize]byte
	buf := make([]byte, batchSize)
	for _, impl := range []struct {
		name string
		f    func(*[KeySize]byte, [BlockSize]byte, bool) (cbcMode, error)
	}{{"stdlib", newCBCStd}, {"aesni", newCBC}} {
		for _, decrypt := range []bool{false, true} {
			op := "encrypt"
			if decrypt {
				op = "decrypt"
			}
			b.Run(impl.name+"/"+op, func(b *testing.B) {
				m, err := impl.f(&key, iv, decrypt)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					m.CryptBlocks(buf, buf)
				}
			})
		}
	}
}
