package cipher

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	passShort = "TestPass-Abc123"
	passLong  = "5oZuQxW0QCvYsm2C1OyJwrWgFNT1MKNfNs0DUm5SW6+QkYj8Kr1GrUcUKh7/3lgH"
	// passWrong gives invalid padding for every vector (see testdata/README.md).
	passWrong = "WrongPass-Abc123"
	// passLucky gives valid padding for vec-17.enc although it is wrong.
	passLucky = "wrong-171"
)

// vector describes one file in testdata (see testdata/README.md).
type vector struct {
	size int
	salt string
	pass string
}

var vectors = []vector{
	{0, "0102030405060708", passShort},
	{1, "a1a2a3a4a5a6a7a8", passShort},
	{15, "0011223344556677", passLong},
	{16, "8899aabbccddeeff", passLong},
	{17, "deadbeefcafebabe", passShort},
	{1<<20 + 3, "492d162c3e3409f5", passLong},
}

func (v vector) name() string { return fmt.Sprintf("vec-%d", v.size) }

func (v vector) saltBytes(t testing.TB) [SaltSize]byte {
	t.Helper()
	b, err := hex.DecodeString(v.salt)
	if err != nil || len(b) != SaltSize {
		t.Fatalf("bad salt %q: %v", v.salt, err)
	}
	return [SaltSize]byte(b)
}

func (v vector) ciphertext(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", v.name()+".enc"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plain returns the test plaintext of n bytes described in testdata/README.md.
func plain(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131 + i>>10)
	}
	return b
}

// readerKinds wraps a reader in ways that change how much each Read returns.
var readerKinds = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"onebyte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"dataerr", iotest.DataErrReader},
	{"chunk4099", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 4099} }},
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// decryptAll decrypts with NewDecrypter, reading through a 1000-byte buffer
// so that Read (not WriteTo) is exercised.
func decryptAll(r io.Reader, pass string) ([]byte, error) {
	d, err := NewDecrypter(r, []byte(pass))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := d.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// encryptChunks encrypts p with the given salt, writing it in chunks of size
// chunk (all at once when chunk <= 0).
func encryptChunks(t testing.TB, p []byte, pass string, salt [SaltSize]byte, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	e, err := newEncrypter(&out, []byte(pass), salt)
	if err != nil {
		t.Fatal(err)
	}
	if chunk <= 0 {
		chunk = max(len(p), 1)
	}
	for rest := p; len(rest) > 0; {
		k := min(chunk, len(rest))
		n, err := e.Write(rest[:k])
		if err != nil || n != k {
			t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
		}
		rest = rest[k:]
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDeriveKey(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("testdata", "derive.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			want[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	salt, err := hex.DecodeString(want["salt"])
	if err != nil || len(salt) != SaltSize {
		t.Fatalf("derive.txt: bad salt %q", want["salt"])
	}
	key, iv := deriveKey([]byte(passShort), salt)
	if got := strings.ToUpper(hex.EncodeToString(key[:])); got != want["key"] {
		t.Errorf("key = %s, openssl says %s", got, want["key"])
	}
	if got := strings.ToUpper(hex.EncodeToString(iv[:])); got != want["iv"] {
		t.Errorf("iv = %s, openssl says %s", got, want["iv"])
	}
	// The worked example of pgbackrest-format.md section 6.1.
	if want["key"] != "C2E16B415D76230BCED4BD1CD68F33C3AAADC95C457C04A47704D4BBD3AF07BF" ||
		want["iv"] != "4E7E3FA2BF54DAC1714CF8363907AF2A" {
		t.Errorf("derive.txt disagrees with the format reference: %v", want)
	}
}

func TestKnownAnswerEncrypt(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		want := v.ciphertext(t)
		for _, chunk := range []int{0, 1, 15, 16, 17, 4099, batchSize - 1, batchSize + 1} {
			if v.size > 1<<16 && chunk > 0 && chunk < 16 {
				continue // a MiB in tiny writes is slow under -race; small sizes cover it
			}
			t.Run(fmt.Sprintf("%s/chunk%d", v.name(), chunk), func(t *testing.T) {
				t.Parallel()
				got := encryptChunks(t, plain(v.size), v.pass, v.saltBytes(t), chunk)
				if !bytes.Equal(got, want) {
					t.Fatalf("ciphertext differs from openssl's (len %d vs %d)", len(got), len(want))
				}
			})
		}
	}
}

func TestKnownAnswerDecrypt(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		ct := v.ciphertext(t)
		for _, rk := range readerKinds {
			t.Run(v.name()+"/"+rk.name, func(t *testing.T) {
				t.Parallel()
				if v.size > 1<<16 && rk.name == "onebyte" {
					// Keep it fast but still many batches: cut the vector after
					// 4096 blocks. The cut ends inside the plaintext, so the last
					// block is data; its last byte is not valid padding here.
					cut := ct[:HeaderSize+1<<16]
					if last := plain(v.size)[1<<16-1]; last >= 1 && last <= BlockSize {
						t.Fatalf("precondition: plaintext byte %#x would be valid padding", last)
					}
					got, err := decryptAll(rk.wrap(bytes.NewReader(cut)), v.pass)
					if !errors.Is(err, ErrWrongPassphrase) {
						t.Fatalf("cut vector: err = %v, want ErrWrongPassphrase", err)
					}
					if !bytes.Equal(got, plain(v.size)[:len(got)]) || len(got) < 1<<16-BlockSize {
						t.Fatalf("cut vector: %d bytes before the error, not a prefix of the plaintext", len(got))
					}
					return
				}
				got, err := decryptAll(rk.wrap(bytes.NewReader(ct)), v.pass)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain(v.size)) {
					t.Fatalf("plaintext differs (len %d, want %d)", len(got), v.size)
				}
			})
		}
	}
}

func TestDecryptWriteTo(t *testing.T) {
	t.Parallel()
	v := vectors[len(vectors)-1]
	d, err := NewDecrypter(bytes.NewReader(v.ciphertext(t)), []byte(v.pass))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, d)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(v.size) || !bytes.Equal(out.Bytes(), plain(v.size)) {
		t.Fatalf("io.Copy copied %d bytes, want the %d-byte plaintext", n, v.size)
	}
	// After EOF the reader stays at EOF.
	if n, err := d.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 15, 16, 17, 31, 32, 33, 4096,
		batchSize - 17, batchSize - 16, batchSize - 1, batchSize, batchSize + 1, batchSize + 15, batchSize + 16,
		2*batchSize + 17, 1<<20 + 3}
	chunks := []int{0, 1, 3, 16, 17, 4095, batchSize - 1, batchSize + 3}
	for _, size := range sizes {
		for _, chunk := range chunks {
			if size > 3*batchSize && chunk > 0 && chunk < 16 {
				continue // tiny writes of a MiB are slow under -race and add nothing
			}
			t.Run(fmt.Sprintf("size%d/chunk%d", size, chunk), func(t *testing.T) {
				t.Parallel()
				p := plain(size)
				var ct bytes.Buffer
				e, err := NewEncrypter(&ct, []byte(passLong))
				if err != nil {
					t.Fatal(err)
				}
				c := chunk
				if c <= 0 {
					c = max(size, 1)
				}
				for rest := p; len(rest) > 0; {
					k := min(c, len(rest))
					if _, err := e.Write(rest[:k]); err != nil {
						t.Fatal(err)
					}
					rest = rest[k:]
				}
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				wantLen := HeaderSize + (size/BlockSize+1)*BlockSize
				if ct.Len() != wantLen {
					t.Fatalf("ciphertext is %d bytes, want %d", ct.Len(), wantLen)
				}
				if !IsEncrypted(ct.Bytes()) {
					t.Fatal("ciphertext lacks the Salted__ header")
				}
				rk := readerKinds[(size+chunk)%len(readerKinds)]
				if size > 3*batchSize && rk.name == "onebyte" {
					rk = readerKinds[0]
				}
				got, err := decryptAll(rk.wrap(bytes.NewReader(ct.Bytes())), passLong)
				if err != nil {
					t.Fatalf("decrypt (%s reader): %v", rk.name, err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("round trip differs (%s reader)", rk.name)
				}
			})
		}
	}
}

func TestRandomSalt(t *testing.T) {
	t.Parallel()
	a, err := Encrypt([]byte("same"), []byte(passShort))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encrypt([]byte("same"), []byte(passShort))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[len(Magic):HeaderSize], b[len(Magic):HeaderSize]) {
		t.Fatal("two encryptions used the same salt")
	}
	for _, c := range [][]byte{a, b} {
		got, err := Decrypt(c, []byte(passShort))
		if err != nil || string(got) != "same" {
			t.Fatalf("Decrypt = %q, %v", got, err)
		}
	}
}

func TestWrongPassphrase(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		t.Run(v.name(), func(t *testing.T) {
			t.Parallel()
			_, err := decryptAll(bytes.NewReader(v.ciphertext(t)), passWrong)
			if !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("err = %v, want ErrWrongPassphrase", err)
			}
			if !strings.Contains(err.Error(), "wrong passphrase") || strings.Contains(err.Error(), "padding") {
				t.Fatalf("message %q should say wrong passphrase", err)
			}
		})
	}
	// The ~1/256 case: valid padding by chance. Nothing can detect it; the
	// output is garbage and callers must rely on checksums.
	t.Run("undetectable", func(t *testing.T) {
		t.Parallel()
		v := vectors[4]
		got, err := decryptAll(bytes.NewReader(v.ciphertext(t)), passLucky)
		if err != nil {
			t.Fatalf("err = %v; testdata/README.md says %s yields valid padding", err, passLucky)
		}
		if bytes.Equal(got, plain(v.size)) {
			t.Fatal("wrong passphrase produced the plaintext")
		}
	})
}

func TestTamper(t *testing.T) {
	t.Parallel()
	v := vectors[len(vectors)-1] // 1 MiB + 3
	orig := v.ciphertext(t)
	p := plain(v.size)
	flip := func(i int, mask byte) func([]byte) []byte {
		return func(b []byte) []byte { b[i] ^= mask; return b }
	}
	n := len(orig)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   error // nil: undetectable, plaintext must still differ
	}{
		{"magic", flip(0, 0x01), ErrNotEncrypted},
		{"magic-last-byte", flip(len(Magic)-1, 0x20), ErrNotEncrypted},
		{"plain-object", func([]byte) []byte { return plain(1000) }, ErrNotEncrypted},
		{"gzip-object", func([]byte) []byte { return []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3} }, ErrNotEncrypted},
		{"short-plain", func([]byte) []byte { return []byte("Salt") }, ErrTruncated},
		{"short-not-magic", func([]byte) []byte { return []byte("Sal!") }, ErrNotEncrypted},
		{"empty", func([]byte) []byte { return nil }, ErrTruncated},
		{"header-only", func(b []byte) []byte { return b[:HeaderSize] }, ErrTruncated},
		{"header-partial", func(b []byte) []byte { return b[:HeaderSize-3] }, ErrTruncated},
		{"header-plus-15", func(b []byte) []byte { return b[:HeaderSize+15] }, ErrTruncated},
		{"cut-1", func(b []byte) []byte { return b[:n-1] }, ErrTruncated},
		{"cut-15", func(b []byte) []byte { return b[:n-15] }, ErrTruncated},
		{"extra-byte", func(b []byte) []byte { return append(b, 0) }, ErrTruncated},
		// Whole blocks cut: the new last block is data whose last byte is
		// checked below to be invalid padding, so the cut is detected.
		{"cut-block", func(b []byte) []byte { return b[:n-BlockSize] }, ErrWrongPassphrase},
		{"cut-half", func(b []byte) []byte { return b[:HeaderSize+(n-HeaderSize)/2/BlockSize*BlockSize] }, ErrWrongPassphrase},
		// A different salt is a different key: the padding check catches it
		// for this vector (as it does ~255/256 of the time).
		{"salt", flip(len(Magic)+3, 0x40), ErrWrongPassphrase},
		{"last-block", flip(n-5, 0x01), ErrWrongPassphrase},
		// CBC malleability: flipping a bit of the previous block flips the same
		// bit of the last padding byte, which is always detected.
		{"pad-byte", flip(n-BlockSize-1, 0x01), ErrWrongPassphrase},
		// A flipped bit in the middle garbles one block and flips one bit in
		// the next; without a MAC this is not detectable here.
		{"middle", flip(n/2, 0x80), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct := tc.mutate(bytes.Clone(orig))
			if strings.HasPrefix(tc.name, "cut-block") || tc.name == "cut-half" {
				// Precondition for expecting ErrWrongPassphrase: the last byte of
				// the remaining plaintext is not a valid pad length.
				last := p[len(ct)-HeaderSize-1]
				if last >= 1 && last <= BlockSize {
					t.Fatalf("precondition: plaintext byte %#x would be valid padding", last)
				}
			}
			got, err := decryptAll(bytes.NewReader(ct), v.pass)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want none (undetectable)", err)
				}
				if bytes.Equal(got, p) {
					t.Fatal("tampered ciphertext decrypted to the original plaintext")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// Error is sticky.
			if _, err2 := decryptAll(bytes.NewReader(ct), v.pass); !errors.Is(err2, tc.want) {
				t.Fatalf("second attempt err = %v", err2)
			}
		})
	}
}

func TestIsEncrypted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"Salted_", false},
		{"Salted__", true},
		{"Salted__\x01\x02\x03\x04\x05\x06\x07\x08xyz", true},
		{"salted__12345678", false},
		{"\x1f\x8b\x08\x00", false},
	}
	for _, tc := range tests {
		if got := IsEncrypted([]byte(tc.in)); got != tc.want {
			t.Errorf("IsEncrypted(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNewPassphrase(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 50 {
		p, err := NewPassphrase()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 64 {
			t.Fatalf("passphrase %q has %d characters, want 64", p, len(p))
		}
		raw, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(raw) != 48 {
			t.Fatalf("passphrase %q is not base64 of 48 bytes: %v", p, err)
		}
		if seen[p] {
			t.Fatalf("passphrase %q generated twice", p)
		}
		seen[p] = true
	}
}

func TestEmptyPassphrase(t *testing.T) {
	t.Parallel()
	if _, err := NewEncrypter(io.Discard, nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("NewEncrypter: err = %v", err)
	}
	if _, err := NewDecrypter(strings.NewReader(""), []byte{}); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("NewDecrypter: err = %v", err)
	}
}

// failWriter accepts limit bytes and then fails.
type failWriter struct {
	limit int
	err   error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, f.err
	}
	f.limit -= len(p)
	return len(p), nil
}

func TestEncrypterErrors(t *testing.T) {
	t.Parallel()
	t.Run("write-fails", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		e, err := NewEncrypter(&failWriter{limit: 100, err: boom}, []byte(passShort))
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for range 10 {
			if _, werr = e.Write(plain(batchSize / 2)); werr != nil {
				break
			}
		}
		if !errors.Is(werr, boom) {
			t.Fatalf("Write err = %v, want boom", werr)
		}
		if _, err := e.Write([]byte("x")); !errors.Is(err, boom) {
			t.Fatalf("Write after failure err = %v", err)
		}
		if err := e.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close err = %v", err)
		}
	})
	t.Run("close-fails", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		e, err := NewEncrypter(&failWriter{limit: 10, err: boom}, []byte(passShort))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Write([]byte("small")); err != nil {
			t.Fatalf("small Write is buffered, got %v", err)
		}
		if err := e.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close err = %v", err)
		}
	})
	t.Run("close-twice", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		e, err := NewEncrypter(&buf, []byte(passShort))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != Overhead {
			t.Fatalf("empty plaintext gave %d bytes, want %d", buf.Len(), Overhead)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		if buf.Len() != Overhead {
			t.Fatal("second Close wrote more data")
		}
		if _, err := e.Write([]byte("x")); err == nil {
			t.Fatal("Write after Close succeeded")
		}
	})
}

func TestDecrypterReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	v := vectors[len(vectors)-1]
	for _, at := range []int64{5, int64(HeaderSize) + 100, 200000} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			t.Parallel()
			r := io.MultiReader(io.LimitReader(bytes.NewReader(v.ciphertext(t)), at), iotest.ErrReader(boom))
			_, err := decryptAll(r, v.pass)
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
		})
	}
}

// FuzzDecrypt checks that arbitrary input never panics, that errors are the
// documented ones, and that anything accepted re-encrypts (with its own salt)
// to exactly the input.
func FuzzDecrypt(f *testing.F) {
	for _, v := range vectors[:5] {
		f.Add(v.ciphertext(f))
	}
	f.Add([]byte("Salted__"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := decryptAll(iotest.HalfReader(bytes.NewReader(in)), passShort)
		if err != nil {
			if !errors.Is(err, ErrNotEncrypted) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(out) > len(in)-HeaderSize-1 {
			t.Fatalf("%d bytes of plaintext from %d bytes of input", len(out), len(in))
		}
		again := encryptChunks(t, out, passShort, [SaltSize]byte(in[len(Magic):HeaderSize]), 7)
		if !bytes.Equal(again, in) {
			t.Fatal("re-encryption differs from the input")
		}
	})
}

func BenchmarkEncrypt(b *testing.B) {
	p := plain(4 << 20)
	e, err := NewEncrypter(io.Discard, []byte(passLong))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := e.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkDecrypt(b *testing.B) {
	ct := encryptChunks(b, plain(4<<20), passLong, [SaltSize]byte{1, 2, 3, 4, 5, 6, 7, 8}, 0)
	b.SetBytes(int64(len(ct) - Overhead))
	r := bytes.NewReader(ct)
	for b.Loop() {
		r.Reset(ct)
		d, err := NewDecrypter(r, []byte(passLong))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
}
