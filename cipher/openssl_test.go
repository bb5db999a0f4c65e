package cipher

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// opensslPath returns the openssl binary; the interop tests fail rather than
// skip without it.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl CLI is required for the interoperability tests: %v", err)
	}
	return p
}

// runOpenSSL runs openssl enc with args and returns stdout.
func runOpenSSL(t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), opensslPath(t), append([]string{"enc"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("openssl enc %v: %w: %s", args, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

var interopSizes = []int{0, 1, 15, 16, 17, batchSize + 5, 1<<20 + 3}

// interopPasses includes characters that need care on a command line; the
// 64-character one is in the form of a generated sub-passphrase.
var interopPasses = []string{passShort, passLong, "pa ss\"'$;+/="}

func TestOpenSSLDecryptsOurs(t *testing.T) {
	t.Parallel()
	opensslPath(t)
	for _, size := range interopSizes {
		for _, pass := range interopPasses {
			t.Run(fmt.Sprintf("%d/%.8s", size, pass), func(t *testing.T) {
				t.Parallel()
				p := plain(size)
				ct, err := Encrypt(p, []byte(pass))
				if err != nil {
					t.Fatal(err)
				}
				// Through a file, as the repo would store it.
				f := filepath.Join(t.TempDir(), "obj")
				if err := os.WriteFile(f, ct, 0o600); err != nil {
					t.Fatal(err)
				}
				got, err := runOpenSSL(t, nil, "-d", "-aes-256-cbc", "-md", "sha1", "-pass", "pass:"+pass, "-in", f)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("openssl decrypted %d bytes that differ from the %d-byte plaintext", len(got), size)
				}
			})
		}
	}
}

func TestWeDecryptOpenSSL(t *testing.T) {
	t.Parallel()
	opensslPath(t)
	for _, size := range interopSizes {
		for _, pass := range interopPasses {
			t.Run(fmt.Sprintf("%d/%.8s", size, pass), func(t *testing.T) {
				t.Parallel()
				p := plain(size)
				// openssl picks a random salt and writes the Salted__ header itself.
				ct, err := runOpenSSL(t, p, "-aes-256-cbc", "-md", "sha1", "-pass", "pass:"+pass)
				if err != nil {
					t.Fatal(err)
				}
				if !IsEncrypted(ct) {
					t.Fatalf("openssl output lacks the header: % x", ct[:min(len(ct), 16)])
				}
				got, err := Decrypt(ct, []byte(pass))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, p) {
					t.Fatal("plaintext differs")
				}
			})
		}
	}
}

// TestOpenSSLAgreesOnWrongPassphrase checks the claims in testdata/README.md
// that the wrong-passphrase tests rely on.
func TestOpenSSLAgreesOnWrongPassphrase(t *testing.T) {
	t.Parallel()
	opensslPath(t)
	for _, v := range vectors {
		f := filepath.Join("testdata", v.name()+".enc")
		if _, err := runOpenSSL(t, nil, "-d", "-aes-256-cbc", "-md", "sha1", "-pass", "pass:"+passWrong, "-in", f); err == nil {
			t.Errorf("%s: openssl accepted %s", v.name(), passWrong)
		}
	}
	v := vectors[4]
	got, err := runOpenSSL(t, nil, "-d", "-aes-256-cbc", "-md", "sha1", "-pass", "pass:"+passLucky,
		"-in", filepath.Join("testdata", v.name()+".enc"))
	if err != nil {
		t.Fatalf("openssl rejected %s: %v", passLucky, err)
	}
	ours, err := Decrypt(v.ciphertext(t), []byte(passLucky))
	if err != nil || !bytes.Equal(ours, got) {
		t.Fatalf("ours = %x, %v; openssl = %x", ours, err, got)
	}
}
