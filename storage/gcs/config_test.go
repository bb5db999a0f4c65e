package gcs_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/gcs"
)

const secretToken = "ya29.secret-token-value"

// writeServiceKey writes a syntactically valid service-account key file.
func writeServiceKey(t *testing.T, dir string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":         "service_account",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "backup@pgsidecar-test.iam.gserviceaccount.com",
		"token_uri":    "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "service.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readKey returns the private_key of the key file at path.
func readKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k.PrivateKey
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serviceKey := writeServiceKey(t, dir)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notJSON := write("not.json", "this is not json")
	userCreds := write("user.json", `{"type":"authorized_user","client_id":"a","client_secret":"b","refresh_token":"c"}`)
	notPEM := write("ca.txt", "no certificates here")
	const secretPEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	keyFile := func(name string, fields map[string]string) string {
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, string(b))
	}
	httpTokenURI := keyFile("http-token-uri.json", map[string]string{"type": "service_account", "client_email": "a@b",
		"private_key": readKey(t, serviceKey), "token_uri": "http://oauth2.example.net/token"})
	badPEM := keyFile("bad-pem.json", map[string]string{"type": "service_account", "client_email": "a@b", "private_key": secretPEM})
	noEmail := keyFile("no-email.json", map[string]string{"type": "service_account", "private_key": readKey(t, serviceKey)})
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	valid := gcs.Config{Bucket: "pgsidecar-repo", KeyType: gcs.KeyTypeToken, Key: secretToken, VerifyTLS: true}
	with := func(f func(*gcs.Config)) gcs.Config {
		c := valid
		f(&c)
		return c
	}

	for _, tc := range []struct {
		name    string
		cfg     gcs.Config
		wantErr string   // substring of the error; "" means New succeeds
		wantIs  []error  // errors the error must match
		notIn   []string // strings the error must not contain
	}{
		{"Valid", valid, "", nil, nil},
		{"ValidServiceKeyDefaultType", with(func(c *gcs.Config) { c.KeyType = ""; c.Key = serviceKey }), "", nil, nil},
		{"ValidNoneOverHTTP", with(func(c *gcs.Config) {
			c.KeyType, c.Key, c.Endpoint = gcs.KeyTypeNone, "", "http://127.0.0.1:1/storage/v1/"
		}), "", nil, nil},
		{"ValidPrefixAndChunk", with(func(c *gcs.Config) { c.Prefix = "/var/lib/pgbackrest/"; c.ChunkSize = 64 << 10 }), "", nil, nil},
		{"MissingBucket", with(func(c *gcs.Config) { c.Bucket = "" }), "repo1-gcs-bucket is required", []error{storage.ErrInvalid}, nil},
		{"MissingBucketRepo3", with(func(c *gcs.Config) { c.Bucket = ""; c.Repo = 3 }), "repo3-gcs-bucket is required", []error{storage.ErrInvalid}, nil},
		{"BadBucket", with(func(c *gcs.Config) { c.Bucket = "Bad/Bucket" }), "repo1-gcs-bucket", []error{storage.ErrInvalid}, nil},
		{"BadKeyType", with(func(c *gcs.Config) { c.KeyType = "hmac" }), "repo1-gcs-key-type", []error{storage.ErrInvalid}, []string{secretToken}},
		{"ServiceWithoutKey", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = "" }), "repo1-gcs-key is required", []error{storage.ErrInvalid}, nil},
		{"ServiceKeyMissing", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = filepath.Join(dir, "nope.json") }),
			"repo1-gcs-key: service key file", []error{fs.ErrNotExist}, nil},
		{"ServiceKeyNotJSON", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = notJSON }), "repo1-gcs-key: service key file", nil, nil},
		{"ServiceKeyWrongType", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = userCreds }), "repo1-gcs-key: service key file", nil, nil},
		{"ServiceKeyHTTPTokenURI", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = httpTokenURI }),
			"is not an https URL", []error{storage.ErrInvalid}, []string{"PRIVATE KEY"}},
		{"ServiceKeyBadPEM", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = badPEM }),
			"private_key", []error{storage.ErrInvalid}, []string{"c2VjcmV0"}},
		{"ServiceKeyNoEmail", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeService; c.Key = noEmail }),
			"lacks client_email", []error{storage.ErrInvalid}, []string{"PRIVATE KEY"}},
		{"ValidTokenWithBearer", with(func(c *gcs.Config) { c.Key = "Bearer " + secretToken }), "", nil, nil},
		{"TokenWithoutKey", with(func(c *gcs.Config) { c.Key = "" }), "repo1-gcs-key is required", []error{storage.ErrInvalid}, nil},
		{"AutoWithKey", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeAuto }), "repo1-gcs-key is not valid", []error{storage.ErrInvalid}, []string{secretToken}},
		{"NoneWithKey", with(func(c *gcs.Config) { c.KeyType = gcs.KeyTypeNone }), "repo1-gcs-key is not valid", []error{storage.ErrInvalid}, []string{secretToken}},
		{"TokenOverHTTP", with(func(c *gcs.Config) { c.Endpoint = "http://127.0.0.1:4443" }), "plain http", []error{storage.ErrInvalid}, []string{secretToken}},
		{"EndpointWithPathNoScheme", with(func(c *gcs.Config) { c.Endpoint = "host/storage/v1" }), "repo1-gcs-endpoint", []error{storage.ErrInvalid}, nil},
		{"EndpointBadScheme", with(func(c *gcs.Config) { c.Endpoint = "ftp://host" }), "repo1-gcs-endpoint", []error{storage.ErrInvalid}, nil},
		{"EndpointWithQuery", with(func(c *gcs.Config) { c.Endpoint = "https://host/?x=1" }), "repo1-gcs-endpoint", []error{storage.ErrInvalid}, nil},
		{"ChunkTooSmall", with(func(c *gcs.Config) { c.ChunkSize = 1000 }), "repo1-storage-upload-chunk-size", []error{storage.ErrInvalid}, nil},
		{"ChunkNegative", with(func(c *gcs.Config) { c.ChunkSize = -1 }), "repo1-storage-upload-chunk-size", []error{storage.ErrInvalid}, nil},
		{"PrefixWithDotDot", with(func(c *gcs.Config) { c.Prefix = "/var/../etc" }), "repo1-path", []error{storage.ErrInvalid}, nil},
		{"CAFileMissing", with(func(c *gcs.Config) { c.CAFile = filepath.Join(dir, "nope.pem") }), "repo1-storage-ca-file", []error{fs.ErrNotExist}, nil},
		{"CAFileNotPEM", with(func(c *gcs.Config) { c.CAFile = notPEM }), "repo1-storage-ca-file", []error{storage.ErrInvalid}, nil},
		{"CAPathEmpty", with(func(c *gcs.Config) { c.CAPath = emptyDir }), "repo1-storage-ca-path", []error{storage.ErrInvalid}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := gcs.New(t.Context(), tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatalf("New succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			for _, target := range tc.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not match %v", err, target)
				}
			}
			for _, s := range tc.notIn {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q reveals %q", err, s)
				}
			}
		})
	}
}

// TestAutoNeedsNoEnvironment checks that key type auto is accepted without
// any credentials file: its token comes from the metadata server on first
// use (auth_test.go and TestTLSAndAuthentication exercise it).
func TestAutoNeedsNoEnvironment(t *testing.T) {
	t.Parallel()
	s, err := gcs.New(t.Context(), gcs.Config{Bucket: "pgsidecar-repo", KeyType: gcs.KeyTypeAuto, VerifyTLS: true})
	if err != nil {
		t.Fatalf("New with auto credentials: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		http     bool
	}{
		{"", "https://storage.googleapis.com/storage/v1/", false},
		{"storage.googleapis.com", "https://storage.googleapis.com/storage/v1/", false},
		{"gcs.example.net:8443", "https://gcs.example.net:8443/storage/v1/", false},
		{"https://gcs.example.net", "https://gcs.example.net/storage/v1/", false},
		{"http://127.0.0.1:4443", "http://127.0.0.1:4443/storage/v1/", true},
		{"http://127.0.0.1:4443/storage/v1", "http://127.0.0.1:4443/storage/v1/", true},
		{"http://127.0.0.1:4443/storage/v1/", "http://127.0.0.1:4443/storage/v1/", true},
	} {
		got, plain, err := gcs.ParseEndpoint(tc.in)
		if err != nil || got != tc.want || plain != tc.http {
			t.Errorf("ParseEndpoint(%q) = %q, %v, %v; want %q, %v", tc.in, got, plain, err, tc.want, tc.http)
		}
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"404", gcs.APIError("o", http.StatusNotFound, false), storage.ErrNotExist},
		{"404Session", gcs.APIError("o", http.StatusNotFound, true), nil},
		{"401", gcs.APIError("o", http.StatusUnauthorized, false), storage.ErrPermission},
		{"403", fmt.Errorf("wrapped: %w", gcs.APIError("o", http.StatusForbidden, false)), storage.ErrPermission},
		{"403Session", gcs.APIError("o", http.StatusForbidden, true), storage.ErrPermission},
		{"412", gcs.APIError("o", http.StatusPreconditionFailed, false), storage.ErrExist},
		{"503", gcs.APIError("o", http.StatusServiceUnavailable, false), nil},
		{"Other", errors.New("connection reset"), nil},
	} {
		got := gcs.Translate(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: Translate dropped the original error: %v", tc.name, got)
		}
		for _, s := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrPermission, storage.ErrInvalid} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", tc.name, got, s, !(s == tc.want))
			}
		}
	}
	if gcs.Translate(nil) != nil {
		t.Error("Translate(nil) != nil")
	}
	// The message names the bucket, the object and the HTTP status.
	msg := gcs.APIError("var/lib/pgbackrest/archive.info", http.StatusServiceUnavailable, false).Error()
	for _, want := range []string{`bucket "bucket"`, `object "var/lib/pgbackrest/archive.info"`, "503", "Service Unavailable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}
