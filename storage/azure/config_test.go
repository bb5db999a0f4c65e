package azure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

const testKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

func validConfig() Config {
	return Config{Account: "acct", Container: "backups", Key: testKey, VerifyTLS: true}
}

func TestContainerURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"default host style", func(*Config) {}, "https://acct.blob.core.windows.net/backups"},
		{"explicit host style", func(c *Config) { c.URIStyle = "host" }, "https://acct.blob.core.windows.net/backups"},
		{"path style", func(c *Config) { c.URIStyle = "path" }, "https://blob.core.windows.net/acct/backups"},
		{"endpoint with port", func(c *Config) { c.Endpoint = "blob.example.com:8443" }, "https://acct.blob.example.com:8443/backups"},
		{"endpoint with default port", func(c *Config) { c.Endpoint = "blob.example.com:443" }, "https://acct.blob.example.com/backups"},
		{"port option", func(c *Config) { c.Endpoint = "blob.example.com"; c.Port = 9443 }, "https://acct.blob.example.com:9443/backups"},
		{"port option replaces endpoint port", func(c *Config) { c.Endpoint = "blob.example.com:8443"; c.Port = 9443 }, "https://acct.blob.example.com:9443/backups"},
		{"port 443 option", func(c *Config) { c.Port = 443 }, "https://acct.blob.core.windows.net/backups"},
		{"path style with port", func(c *Config) { c.Endpoint = "10.0.0.5"; c.URIStyle = "path"; c.Port = 10000 }, "https://10.0.0.5:10000/acct/backups"},
		{"IPv6 path style", func(c *Config) { c.Endpoint = "[::1]:10000"; c.URIStyle = "path" }, "https://[::1]:10000/acct/backups"},
		{"IPv6 default port", func(c *Config) { c.Endpoint = "[::1]"; c.URIStyle = "path" }, "https://[::1]/acct/backups"},
		{"https URL", func(c *Config) { c.Endpoint = "https://blob.example.com/" }, "https://acct.blob.example.com/backups"},
		{"azurite URL", func(c *Config) { c.Endpoint = "http://127.0.0.1:10000/devstoreaccount1" }, "http://127.0.0.1:10000/devstoreaccount1/backups"},
		{"azurite URL path style", func(c *Config) { c.Endpoint = "http://127.0.0.1:10000/devstoreaccount1/"; c.URIStyle = "path" }, "http://127.0.0.1:10000/devstoreaccount1/backups"},
		{"http URL without path", func(c *Config) { c.Endpoint = "http://127.0.0.1:10000"; c.URIStyle = "path" }, "http://127.0.0.1:10000/acct/backups"},
		{"http default port", func(c *Config) { c.Endpoint = "http://azurite:80"; c.URIStyle = "path" }, "http://azurite/acct/backups"},
		{"storage host defaults to path style", func(c *Config) { c.Host = "azurite.local" }, "https://azurite.local/acct/backups"},
		{"storage host with port", func(c *Config) { c.Host = "azurite.local"; c.Port = 10000 }, "https://azurite.local:10000/acct/backups"},
		{"storage host with host:port", func(c *Config) { c.Host = "azurite.local:10001" }, "https://azurite.local:10001/acct/backups"},
		{"storage host replaces endpoint", func(c *Config) { c.Endpoint = "ignored.example.com"; c.Host = "127.0.0.1" }, "https://127.0.0.1/acct/backups"},
		{"storage host with explicit host style", func(c *Config) { c.Host = "blob.internal"; c.URIStyle = "host" }, "https://acct.blob.internal/backups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			tc.edit(&cfg)
			st, err := cfg.settings()
			if err != nil {
				t.Fatalf("settings: %v", err)
			}
			if st.containerURL != tc.want {
				t.Fatalf("container URL = %q, want %q", st.containerURL, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; nil means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid sas", func(c *Config) { c.KeyType = "sas"; c.Key = "sv=2022-11-02&sp=rl&sig=abc%2Bdef" }, nil},
		{"valid sas with question mark", func(c *Config) { c.KeyType = "sas"; c.Key = "?sv=2022-11-02&sig=abc" }, nil},
		{"valid prefix", func(c *Config) { c.Prefix = "/pgbackrest/repo1/" }, nil},
		{"missing account", func(c *Config) { c.Account = "" }, []string{"repo1-azure-account is required"}},
		{"bad account", func(c *Config) { c.Account = "My.Account" }, []string{"repo1-azure-account"}},
		{"missing container", func(c *Config) { c.Container = "" }, []string{"repo1-azure-container is required"}},
		{"short container", func(c *Config) { c.Container = "ab" }, []string{"repo1-azure-container"}},
		{"container with double hyphen", func(c *Config) { c.Container = "ab--cd" }, []string{"repo1-azure-container"}},
		{"container with hyphens", func(c *Config) { c.Container = "a-b-c" }, nil},
		{"container leading hyphen", func(c *Config) { c.Container = "-abc" }, []string{"repo1-azure-container"}},
		{"container trailing hyphen", func(c *Config) { c.Container = "abc-" }, []string{"repo1-azure-container"}},
		{"container too long", func(c *Config) { c.Container = strings.Repeat("a", 64) }, []string{"repo1-azure-container"}},
		{"container upper case", func(c *Config) { c.Container = "Backups" }, []string{"repo1-azure-container"}},
		{"missing key", func(c *Config) { c.Key = "" }, []string{"repo1-azure-key is required"}},
		{"key not base64", func(c *Config) { c.Key = "not*base64!" }, []string{"repo1-azure-key is not valid base64"}},
		{"sas without sig", func(c *Config) { c.KeyType = "sas"; c.Key = "sv=2022-11-02&sp=rl" }, []string{"repo1-azure-key is not a SAS token"}},
		{"bad key type", func(c *Config) { c.KeyType = "auto" }, []string{"repo1-azure-key-type"}},
		{"bad uri style", func(c *Config) { c.URIStyle = "virtual" }, []string{"repo1-azure-uri-style"}},
		{"host style on an address", func(c *Config) { c.Endpoint = "127.0.0.1:10000" }, []string{"repo1-azure-uri-style", "path"}},
		{"host style with account path", func(c *Config) { c.Endpoint = "http://127.0.0.1:10000/acct"; c.URIStyle = "host" }, []string{"repo1-azure-uri-style"}},
		{"bad endpoint scheme", func(c *Config) { c.Endpoint = "ftp://example.com" }, []string{"repo1-azure-endpoint"}},
		{"endpoint with query", func(c *Config) { c.Endpoint = "https://example.com/?x=1" }, []string{"repo1-azure-endpoint"}},
		{"endpoint bad port", func(c *Config) { c.Endpoint = "example.com:99999" }, []string{"repo1-azure-endpoint"}},
		{"bad storage host", func(c *Config) { c.Host = "http://" }, []string{"repo1-storage-host"}},
		{"bad port", func(c *Config) { c.Port = 70000 }, []string{"repo1-storage-port"}},
		{"bad prefix", func(c *Config) { c.Prefix = "/a/../b" }, []string{"repo1-path"}},
		{"small block", func(c *Config) { c.BlockSize = 1024 }, []string{"repo1-storage-upload-chunk-size"}},
		{"huge block", func(c *Config) { c.BlockSize = 5000 << 20 }, []string{"repo1-storage-upload-chunk-size"}},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }, []string{"concurrency"}},
		{"other repo index", func(c *Config) { c.Repo = 3; c.Container = "" }, []string{"repo3-azure-container is required"}},
		{"all problems reported", func(c *Config) { c.Account = ""; c.Container = ""; c.Key = "" }, []string{
			"repo1-azure-account is required", "repo1-azure-container is required", "repo1-azure-key is required",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want an error naming %q", tc.want)
			}
			if !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("Validate error %v does not match storage.ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not contain %q", err, w)
				}
			}
			if _, nerr := New(t.Context(), cfg); nerr == nil {
				t.Error("New accepted a configuration that Validate rejects")
			}
		})
	}
}

func TestValidateDefaults(t *testing.T) {
	t.Parallel()
	st, err := validConfig().settings()
	if err != nil {
		t.Fatal(err)
	}
	if st.blockSize != DefaultBlockSize || st.concurrency != DefaultConcurrency || st.prefix != "" {
		t.Fatalf("defaults = block %d, concurrency %d, prefix %q", st.blockSize, st.concurrency, st.prefix)
	}
	cfg := validConfig()
	cfg.Prefix = "/pgbackrest"
	if st, err = cfg.settings(); err != nil || st.prefix != "pgbackrest/" {
		t.Fatalf("prefix of /pgbackrest = %q, %v; want \"pgbackrest/\"", st.prefix, err)
	}
}

// TestSecretsNotInErrors checks that invalid keys are not quoted back.
func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()
	const secret = "TOPSECRETVALUE"
	for _, cfg := range []Config{
		{Account: "acct", Container: "backups", Key: "%%" + secret + "%%"},
		{Account: "acct", Container: "backups", KeyType: "sas", Key: "sv=1&%zz" + secret},
		{Account: "acct", Container: "backups", KeyType: "sas", Key: "sv=1&sp=" + secret},
	} {
		err := cfg.Validate()
		if err == nil {
			t.Fatalf("Validate accepted key %q", cfg.Key)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("Validate error quotes the key: %v", err)
		}
	}
}

func TestConfigStringRedactsKey(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", &cfg), fmt.Sprintf("%s", cfg)} {
		if strings.Contains(out, cfg.Key) || !strings.Contains(out, "Key:REDACTED") || !strings.Contains(out, `Account:"acct"`) {
			t.Errorf("printed config %q shows the key or hides the rest", out)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://a.blob.core.windows.net/c/k", "https://a.blob.core.windows.net/c/k"},
		{"https://a/c/k?comp=block&sig=abc%2Bdef&sv=1", "https://a/c/k?comp=block&sig=REDACTED&sv=1"},
		{"https://a/c/k?sig=%zz", "https://a/c/k?REDACTED"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgsidecar test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCAFile(t *testing.T) {
	t.Parallel()
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"valid", writeCA(t), ""},
		{"missing", filepath.Join(t.TempDir(), "none.pem"), "repo1-storage-ca-file"},
		{"not PEM", garbage, "repo1-storage-ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			cfg.CAFile = tc.file
			s, err := New(t.Context(), cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				defer s.Close()
				if s.transport.TLSClientConfig.RootCAs == nil || s.transport.TLSClientConfig.InsecureSkipVerify {
					t.Fatal("CA file not used, or verification off")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("New = %v, want an ErrInvalid naming %s", err, tc.want)
			}
		})
	}
}

func TestVerifyTLSOff(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	cfg.VerifyTLS = false
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.transport.TLSClientConfig.InsecureSkipVerify {
		t.Fatal("VerifyTLS=false still verifies certificates")
	}
}
