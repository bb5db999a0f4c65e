package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// ---------------------------------------------------------------------------
// Test service (MinIO by default; see the test services contract).

// serviceConfig returns a path-style configuration for the test S3 service
// without a bucket.
func serviceConfig(t *testing.T) Config {
	t.Helper()
	cache := storagetest.Env("PGSIDECAR_CACHE", "")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "pgsidecar")
		}
	}
	defCA := ""
	if cache != "" {
		if p := filepath.Join(cache, "run", "minio", "certs", "public.crt"); fileExists(p) {
			defCA = p
		}
	}
	ca := storagetest.Env("PGSIDECAR_TEST_S3_CA_FILE", defCA)
	return Config{
		Endpoint:  storagetest.Env("PGSIDECAR_TEST_S3_ENDPOINT", "127.0.0.1:9000"),
		Region:    storagetest.Env("PGSIDECAR_TEST_S3_REGION", "us-east-1"),
		Key:       storagetest.Env("PGSIDECAR_TEST_S3_KEY", "pgsidecar"),
		KeySecret: storagetest.Env("PGSIDECAR_TEST_S3_SECRET", "pgsidecar-secret"),
		URIStyle:  URIStylePath,
		VerifyTLS: ca != "",
		CAFile:    ca,
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// testBucket creates a fresh bucket on the test service and returns a
// configuration for it (Prefix empty) and a store at the bucket root. The
// bucket, its objects and unfinished uploads are removed at cleanup. When the
// service cannot be reached the test is skipped, or fails if s3 is required.
func testBucket(t *testing.T) (Config, *Store) {
	t.Helper()
	cfg := serviceConfig(t)
	cfg.Bucket = "pgsidecar-test-" + randomSuffix(t)
	admin, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.CreateBucket(t.Context()); err != nil {
		if code, status := errorCode(err); code == "" && status == 0 {
			storagetest.Unavailable(t, "s3", err)
		}
		t.Fatalf("create bucket %s: %v", cfg.Bucket, err)
	}
	t.Cleanup(func() { removeBucket(t, admin) })
	return cfg, admin
}

func removeBucket(t *testing.T, admin *Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	uploads, err := admin.Uploads(ctx, "")
	if err != nil {
		t.Errorf("cleanup: list uploads of bucket %s: %v", admin.bucket, err)
	}
	for _, u := range uploads {
		if err := admin.AbortUpload(ctx, u); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	err = admin.List(ctx, "", func(oi storage.ObjectInfo) error { return admin.Delete(ctx, oi.Key) })
	if err != nil {
		t.Errorf("cleanup: empty bucket %s: %v", admin.bucket, err)
		return
	}
	if err := admin.DeleteBucket(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// prefixStore returns a store on cfg's bucket below a fresh unique prefix.
func prefixStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	cfg.Prefix = "/t/" + name + "-" + randomSuffix(t)
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// unfinishedUploads lists the multipart uploads in progress under prefix.
func unfinishedUploads(t *testing.T, admin *Store, prefix string) []string {
	t.Helper()
	uploads, err := admin.Uploads(t.Context(), prefix)
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	var keys []string
	for _, u := range uploads {
		keys = append(keys, u.Key)
	}
	return keys
}

// ---------------------------------------------------------------------------
// Conformance and behaviour against the service.

func TestConformance(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return prefixStore(t, cfg) }, storagetest.Options{})
}

// TestBucketRoot checks a store without prefix and that a prefixed store
// sees only its own keys, not those of a sibling prefix sharing its name.
func TestBucketRoot(t *testing.T) {
	t.Parallel()
	cfg, root := testBucket(t)
	ctx := t.Context()
	for _, k := range []string{"repo/a", "repo2/b", "repo/sub/c", "top"} {
		if err := root.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
	}
	var got []string
	if err := root.List(ctx, "", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "repo/a repo/sub/c repo2/b top"; strings.Join(got, " ") != want {
		t.Fatalf("root List = %v, want %s", got, want)
	}
	cfg.Prefix = "/repo/"
	repo, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := repo.List(ctx, "", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "a sub/c"; strings.Join(got, " ") != want {
		t.Fatalf("List below prefix repo = %v, want %s", got, want)
	}
	rc, err := repo.Get(ctx, "sub/c", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if string(b) != "repo/sub/c" {
		t.Fatalf("Get(sub/c) below prefix = %q", b)
	}
}

// TestConditionalWriteIsServerSide bypasses PutIfAbsent's HeadObject
// pre-check to prove that the service itself refuses, with ErrExist, a
// conditional PutObject and a conditional CompleteMultipartUpload of an
// existing key, and that the refused multipart upload is aborted.
func TestConditionalWriteIsServerSide(t *testing.T) {
	t.Parallel()
	cfg, admin := testBucket(t)
	s := prefixStore(t, cfg)
	ctx := t.Context()
	if err := s.Put(ctx, "lock", strings.NewReader("first")); err != nil {
		t.Fatal(err)
	}
	k, _ := s.objectKey("lock")
	if err := s.putObject(ctx, "lock", k, []byte("second"), true); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("conditional PutObject of an existing key = %v, want ErrExist", err)
	}
	first := s.getBuffer()
	if err := s.putMultipart(ctx, "lock", k, first, bytes.NewReader(make([]byte, 100)), true); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("conditional multipart upload of an existing key = %v, want ErrExist", err)
	}
	rc, err := s.Get(ctx, "lock", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if string(b) != "first" {
		t.Fatalf("object changed to %d bytes by refused conditional writes", len(b))
	}
	if left := unfinishedUploads(t, admin, s.prefix); len(left) != 0 {
		t.Fatalf("refused multipart upload left unfinished uploads: %v", left)
	}
	// And a multipart conditional create of a new key succeeds.
	first = s.getBuffer()
	if err := s.putMultipart(ctx, "fresh", k[:len(s.prefix)]+"fresh", first, bytes.NewReader([]byte("tail")), true); err != nil {
		t.Fatalf("conditional multipart upload of a new key: %v", err)
	}
	info, err := s.Stat(ctx, "fresh")
	if err != nil || info.Size != int64(s.partSize)+4 {
		t.Fatalf("Stat(fresh) = %+v, %v; want size %d", info, err, s.partSize+4)
	}
}

// failAfter yields n bytes, then fails.
type failAfter struct{ n int }

var errSourceBroke = errors.New("source broke")

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errSourceBroke
	}
	m := min(len(p), f.n)
	clear(p[:m])
	f.n -= m
	return m, nil
}

// TestFailedMultipartPutIsAborted checks that failed and cancelled
// multipart Puts leave no unfinished upload (whose parts would be billed).
func TestFailedMultipartPutIsAborted(t *testing.T) {
	t.Parallel()
	cfg, admin := testBucket(t)
	s := prefixStore(t, cfg)
	err := s.Put(t.Context(), "broken", &failAfter{n: 3*DefaultPartSize + 17})
	if !errors.Is(err, errSourceBroke) {
		t.Fatalf("Put from a failing source = %v, want its error", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancelled := &cancelAfter{n: 2*DefaultPartSize + 1, cancel: cancel}
	if err := s.Put(ctx, "cancelled", cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put = %v, want context.Canceled", err)
	}
	if left := unfinishedUploads(t, admin, s.prefix); len(left) != 0 {
		t.Fatalf("failed multipart Puts left unfinished uploads: %v", left)
	}
	for _, k := range []string{"broken", "cancelled"} {
		if _, err := s.Stat(t.Context(), k); !errors.Is(err, storage.ErrNotExist) {
			t.Fatalf("Stat(%s) after a failed Put = %v, want ErrNotExist", k, err)
		}
	}
}

// cancelAfter yields n bytes, then cancels the Put's context and blocks
// reads with the cancellation error.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n == 0 {
		c.cancel()
		return 0, context.Canceled
	}
	m := min(len(p), c.n)
	clear(p[:m])
	c.n -= m
	return m, nil
}

// zeroReader yields n zero bytes.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	m := int(min(int64(len(p)), z.n))
	clear(p[:m])
	z.n -= int64(m)
	return m, nil
}

// TestPutMemoryIsBounded streams 64 MiB through a store with 5 MiB parts
// and 2 in flight and checks that the heap allocated meanwhile stays near
// the 10 MiB of part buffers, far below the object size. It does not call t.Parallel: the allocation
// counter is process-wide and other tests would inflate it.
func TestPutMemoryIsBounded(t *testing.T) {
	cfg, _ := testBucket(t)
	cfg.Concurrency = 2
	s := prefixStore(t, cfg)
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.Put(t.Context(), "big", &zeroReader{n: size}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	// Besides the part buffers, TLS record encryption allocates a little per
	// byte sent (about 1/7 of it with the race detector), so the slack is a
	// quarter of the object: still far below what buffering the object, or
	// allocating a buffer per part, would take (64 MiB or more).
	limit := uint64(cfg.Concurrency*DefaultPartSize + size/4)
	t.Logf("Put of %d MiB allocated %.1f MiB (limit %.1f MiB)", size>>20, float64(allocated)/(1<<20), float64(limit)/(1<<20))
	if allocated > limit {
		t.Fatalf("Put of %d bytes allocated %d bytes, more than %d", size, allocated, limit)
	}
	info, err := s.Stat(t.Context(), "big")
	if err != nil || info.Size != size {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
}

// TestStorageHost connects to the service through repoN-storage-host while
// the endpoint names a host that does not resolve, as pgBackRest allows.
func TestStorageHost(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	host, portStr, err := net.SplitHostPort(cfg.Endpoint)
	if err != nil {
		t.Skipf("test endpoint %q has no port: %v", cfg.Endpoint, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"HostWithPort":  func(c *Config) { c.Host = net.JoinHostPort(host, portStr) },
		"HostPlusPort":  func(c *Config) { c.Host, c.Port = host, port },
		"PortOverrides": func(c *Config) { c.Host, c.Port = net.JoinHostPort(host, "1"), port },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := cfg
			c.Endpoint = "s3.pgsidecar.invalid"
			mod(&c)
			s := prefixStore(t, c)
			if err := s.Put(t.Context(), "via/host", strings.NewReader("hello")); err != nil {
				t.Fatalf("Put through storage host: %v", err)
			}
			info, err := s.Stat(t.Context(), "via/host")
			if err != nil || info.Size != 5 {
				t.Fatalf("Stat = %+v, %v", info, err)
			}
		})
	}
}

// TestTLSVerification checks that the self-signed certificate of the
// test service is refused without its CA, accepted with it as a file or in
// a directory, and accepted with verification off.
func TestTLSVerification(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	if cfg.CAFile == "" {
		t.Skip("the test service has no CA file (plain HTTP or TLS verification off)")
	}
	caDir := t.TempDir()
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "minio.pem"), pem, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		wantOK bool
	}{
		{"NoCA", func(c *Config) { c.CAFile = "" }, false},
		{"CAFile", func(*Config) {}, true},
		{"CAPath", func(c *Config) { c.CAFile, c.CAPath = "", caDir }, true},
		{"VerifyOff", func(c *Config) { c.CAFile, c.VerifyTLS = "", false }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := cfg
			tc.mod(&c)
			s := prefixStore(t, c)
			_, err := s.Stat(t.Context(), "missing")
			switch {
			case tc.wantOK && !errors.Is(err, storage.ErrNotExist):
				t.Fatalf("Stat(missing) = %v, want ErrNotExist", err)
			case !tc.wantOK:
				var uaErr x509.UnknownAuthorityError
				if !errors.As(err, &uaErr) {
					t.Fatalf("Stat without the CA = %v, want an unknown-authority error", err)
				}
			}
		})
	}
}

// TestServiceErrors checks the error translation against real answers: a
// missing bucket, bad credentials, a missing key.
func TestServiceErrors(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	ctx := t.Context()

	missing := cfg
	missing.Bucket = "pgsidecar-missing-" + randomSuffix(t)
	s, err := New(ctx, missing)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "x", storage.Range{})
	if !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), missing.Bucket) {
		t.Errorf("Get from a missing bucket = %v, want ErrNotExist naming the bucket", err)
	}
	var respErr *ResponseError
	if !errors.As(err, &respErr) || respErr.Code != "NoSuchBucket" || respErr.StatusCode != http.StatusNotFound {
		t.Errorf("Get from a missing bucket lost the service's error: %v", err)
	}
	if err := s.Put(ctx, "x", strings.NewReader("x")); !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), missing.Bucket) {
		t.Errorf("Put to a missing bucket = %v, want ErrNotExist naming the bucket", err)
	}
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("List of a missing bucket = %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, "x"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Delete in a missing bucket = %v, want ErrNotExist", err)
	}

	bad := cfg
	bad.KeySecret = "not-the-secret"
	s, err = New(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "x"); !errors.Is(err, storage.ErrPermission) {
		t.Errorf("Stat with a wrong secret = %v, want ErrPermission", err)
	}
	if err := s.Put(ctx, "x", strings.NewReader("x")); !errors.Is(err, storage.ErrPermission) {
		t.Errorf("Put with a wrong secret = %v, want ErrPermission", err)
	}
	if strings.Contains(fmt.Sprint(err), bad.KeySecret) {
		t.Errorf("error message leaks the secret: %v", err)
	}

	good := prefixStore(t, cfg)
	_, err = good.Get(ctx, "no/such", storage.Range{Offset: 5})
	if !errors.Is(err, storage.ErrNotExist) || !errors.As(err, &respErr) || respErr.Code != "NoSuchKey" {
		t.Errorf("ranged Get of a missing key = %v, want ErrNotExist with NoSuchKey", err)
	}
	if msg := fmt.Sprint(err); !strings.Contains(msg, "s3://"+cfg.Bucket+"/"+good.prefix+"no/such") || !strings.Contains(msg, "HTTP 404 NoSuchKey") {
		t.Errorf("error %q does not name the object, the status and the S3 error code", msg)
	}
}

// TestPutIfAbsentRaceMultipart races conditional creates of an object
// larger than one part, so the condition sits on CompleteMultipartUpload.
func TestPutIfAbsentRaceMultipart(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	storagetest.RacePutIfAbsent(t, prefixStore(t, cfg), "race", 4, func(i int) []byte {
		return bytes.Repeat([]byte{byte('a' + i)}, DefaultPartSize+100)
	})
}

// ---------------------------------------------------------------------------
// Unit tests: configuration, endpoint resolution, error translation.

func validConfig() Config {
	return Config{Bucket: "bucket", Endpoint: "s3.us-east-2.amazonaws.com", Region: "us-east-2", Key: "AKID", KeySecret: "SECRET", VerifyTLS: true}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"Valid", func(*Config) {}, nil},
		{"ValidAuto", func(c *Config) { c.Key, c.KeySecret, c.KeyType = "", "", KeyTypeAuto }, nil},
		{"ValidFull", func(c *Config) {
			c.Repo, c.Prefix, c.URIStyle, c.Host, c.Port, c.PartSize, c.Concurrency, c.KMSKeyID, c.Token = 2, "/pgbackrest", URIStylePath, "h", 9000, 16<<20, 8, "kms-key", "tok"
		}, nil},
		{"Empty", func(c *Config) { *c = Config{} }, []string{"repo1-s3-bucket is required", "repo1-s3-region is required", "repo1-s3-endpoint is required", "repo1-s3-key and repo1-s3-key-secret are required"}},
		{"RepoIndex", func(c *Config) { c.Repo = 3; c.Bucket = "" }, []string{"repo3-s3-bucket is required"}},
		{"NoSecret", func(c *Config) { c.KeySecret = "" }, []string{"repo1-s3-key and repo1-s3-key-secret are required when repo1-s3-key-type is shared"}},
		{"BadURIStyle", func(c *Config) { c.URIStyle = "virtual" }, []string{`repo1-s3-uri-style "virtual" must be`}},
		{"BadKeyType", func(c *Config) { c.KeyType = "iam" }, []string{`repo1-s3-key-type "iam" must be`}},
		{"KeyWithAuto", func(c *Config) { c.KeyType = KeyTypeAuto }, []string{"only valid when repo1-s3-key-type is shared"}},
		{"WebIDWithoutRole", func(c *Config) {
			c.Key, c.KeySecret, c.KeyType, c.WebIdentityTokenFile = "", "", KeyTypeWebID, "/var/run/token"
		}, []string{"repo1-s3-key-type is web-id but AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set"}},
		{"WebIDWithoutTokenFile", func(c *Config) {
			c.Key, c.KeySecret, c.KeyType, c.WebIdentityRoleARN = "", "", KeyTypeWebID, "arn:aws:iam::1:role/r"
		}, []string{"repo1-s3-key-type is web-id but AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set"}},
		{"SmallPart", func(c *Config) { c.PartSize = 1 << 20 }, []string{"repo1-storage-upload-chunk-size 1048576 must be between 5MiB and 5GiB"}},
		{"HugePart", func(c *Config) { c.PartSize = 6 << 30 }, []string{"repo1-storage-upload-chunk-size"}},
		{"NegativeConcurrency", func(c *Config) { c.Concurrency = -1 }, []string{"concurrency -1 must be positive"}},
		{"EndpointWithPath", func(c *Config) { c.Endpoint = "https://s3.example.com/bucket" }, []string{"repo1-s3-endpoint", "without user, path or query"}},
		{"EndpointScheme", func(c *Config) { c.Endpoint = "ftp://s3.example.com" }, []string{`repo1-s3-endpoint "ftp://s3.example.com": scheme "ftp"`}},
		{"EndpointPort", func(c *Config) { c.Endpoint = "s3.example.com:99999" }, []string{"repo1-s3-endpoint", "out of range"}},
		{"BadHost", func(c *Config) { c.Host = "http://h/x" }, []string{"repo1-storage-host"}},
		{"HostSchemeMismatch", func(c *Config) { c.Endpoint, c.Host = "http://e", "https://h" }, []string{"repo1-storage-host \"https://h\" uses https but repo1-s3-endpoint uses http"}},
		{"BadPort", func(c *Config) { c.Host, c.Port = "h", 70000 }, []string{"repo1-storage-port 70000 is out of range"}},
		{"UncleanPath", func(c *Config) { c.Prefix = "/repo/../x" }, []string{`repo1-path "/repo/../x" is not a clean path`}},
		{"BucketWithSlash", func(c *Config) { c.Bucket = "a/b" }, []string{`repo1-s3-bucket "a/b" is not a valid bucket name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			tc.mod(&cfg)
			_, err := New(t.Context(), cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New(valid) = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted %v", cfg)
			}
			if !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	o, err := validate(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if o.PartSize != 5<<20 || o.Concurrency != 4 || o.URIStyle != URIStyleHost || o.KeyType != KeyTypeShared || o.pathStyle {
		t.Fatalf("defaults: part %d, concurrency %d, uri style %q, key type %q, path style %v",
			o.PartSize, o.Concurrency, o.URIStyle, o.KeyType, o.pathStyle)
	}
}

// TestWebIdentityConfig checks that web-id needs both the role and the
// token file (New says so, naming the variables the caller reads), and
// that with both New builds a store without contacting STS.
func TestWebIdentityConfig(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	cfg.Key, cfg.KeySecret, cfg.KeyType = "", "", KeyTypeWebID
	_, err := New(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "repo1-s3-key-type is web-id but AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set") {
		t.Fatalf("New(web-id without role and token file) = %v", err)
	}
	cfg.WebIdentityRoleARN = "arn:aws:iam::123456789012:role/backup"
	cfg.WebIdentityTokenFile = filepath.Join(t.TempDir(), "token")
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New(web-id with role and token file) = %v", err)
	}
	_ = s.Close()
}

// TestEndpointResolution checks where requests go, through the URLs the
// requests are built from (no network): host or path style, an explicit
// port or scheme, and the storage host override.
func TestEndpointResolution(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mod      func(*Config)
		wantURL  string // scheme://host/path of the request
		wantDial string
		wantTLS  string
	}{
		{"HostStyle", func(*Config) {}, "https://bucket.s3.us-east-2.amazonaws.com/repo/a/b", "", ""},
		{"PathStyle", func(c *Config) { c.URIStyle = URIStylePath }, "https://s3.us-east-2.amazonaws.com/bucket/repo/a/b", "", ""},
		{"HostStyleIPFallsBackToPath", func(c *Config) { c.Endpoint = "127.0.0.1:9000" }, "https://127.0.0.1:9000/bucket/repo/a/b", "", ""},
		{"PathStyleIPPort", func(c *Config) { c.URIStyle, c.Endpoint = URIStylePath, "127.0.0.1:9000" }, "https://127.0.0.1:9000/bucket/repo/a/b", "", ""},
		{"HostStylePort", func(c *Config) { c.Endpoint = "minio.local:9000" }, "https://bucket.minio.local:9000/repo/a/b", "", ""},
		{"HTTPURL", func(c *Config) { c.URIStyle, c.Endpoint = URIStylePath, "http://minio:9000/" }, "http://minio:9000/bucket/repo/a/b", "", ""},
		{"HTTPSURL", func(c *Config) { c.Endpoint = "https://s3.example.com" }, "https://bucket.s3.example.com/repo/a/b", "", ""},
		{"IPv6", func(c *Config) { c.URIStyle, c.Endpoint = URIStylePath, "[::1]:9000" }, "https://[::1]:9000/bucket/repo/a/b", "", ""},
		{"StorageHost", func(c *Config) { c.Host = "10.0.0.5" }, "https://bucket.s3.us-east-2.amazonaws.com/repo/a/b", "10.0.0.5:443", "10.0.0.5"},
		{"StorageHostPort", func(c *Config) { c.Host = "proxy.local:8443" }, "https://bucket.s3.us-east-2.amazonaws.com/repo/a/b", "proxy.local:8443", "proxy.local"},
		{"StoragePortOverrides", func(c *Config) { c.Host, c.Port = "proxy.local:8443", 9443 }, "https://bucket.s3.us-east-2.amazonaws.com/repo/a/b", "proxy.local:9443", "proxy.local"},
		{"StorageHostDropsEndpointPort", func(c *Config) { c.Endpoint, c.Host, c.URIStyle = "minio:9000", "127.0.0.1", URIStylePath }, "https://minio/bucket/repo/a/b", "127.0.0.1:443", "127.0.0.1"},
		{"PortWithoutHostAppliesToEndpoint", func(c *Config) { c.Port = 9000 }, "https://bucket.s3.us-east-2.amazonaws.com:9000/repo/a/b", "", ""},
		{"PortOverridesEndpointPort", func(c *Config) { c.URIStyle, c.Endpoint, c.Port = URIStylePath, "127.0.0.1:1", 9000 }, "https://127.0.0.1:9000/bucket/repo/a/b", "", ""},
		{"HTTPStorageHost", func(c *Config) { c.Endpoint, c.Host = "http://minio", "10.0.0.5" }, "http://bucket.minio/repo/a/b", "10.0.0.5:80", "10.0.0.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			cfg.Prefix = "/repo"
			tc.mod(&cfg)
			o, err := validate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if o.dialAddr != tc.wantDial || o.tlsName != tc.wantTLS {
				t.Errorf("dial %q, TLS name %q; want %q, %q", o.dialAddr, o.tlsName, tc.wantDial, tc.wantTLS)
			}
			s, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			k, err := s.objectKey("a/b")
			if err != nil {
				t.Fatal(err)
			}
			u := s.objectURL(k)
			if got := u.Scheme + "://" + u.Host + u.Path; got != tc.wantURL {
				t.Errorf("request URL %s, want %s", got, tc.wantURL)
			}
		})
	}
}

func TestConfigStringRedactsSecrets(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	cfg.Token = "TOKEN-VALUE"
	for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
		out := fmt.Sprintf(verb, cfg)
		for _, secret := range []string{cfg.Key, cfg.KeySecret, cfg.Token} {
			if strings.Contains(out, secret) {
				t.Errorf("%s of Config leaks a secret: %s", verb, out)
			}
		}
		if !strings.Contains(out, "bucket") {
			t.Errorf("%s of Config lost the bucket: %s", verb, out)
		}
	}
	if cfg.Key != "AKID" {
		t.Fatal("String changed the Config")
	}
}

// serviceError is the error the driver returns for a service answer.
func serviceError(status int, code string) error {
	return &ResponseError{StatusCode: status, Code: code, Message: "message", RequestID: "req-1"}
}

func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	s := &Store{bucket: "the-bucket", prefix: "repo/"}
	netErr := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name       string
		err        error
		want       error // nil: no sentinel
		nameBucket bool
		inChain    error // what errors.Is must still find
		status     string
	}{
		{"NoSuchKey", serviceError(404, "NoSuchKey"), storage.ErrNotExist, false, nil, "HTTP 404 NoSuchKey"},
		{"HeadNotFound", &ResponseError{StatusCode: 404}, storage.ErrNotExist, false, nil, "HTTP 404 Not Found"},
		{"Bare404", serviceError(404, "SomethingElse"), storage.ErrNotExist, false, nil, "HTTP 404 SomethingElse"},
		{"NoSuchBucket", serviceError(404, "NoSuchBucket"), storage.ErrNotExist, true, nil, "HTTP 404 NoSuchBucket"},
		{"NoSuchUploadIsNotNotExist", serviceError(404, "NoSuchUpload"), nil, false, nil, "HTTP 404 NoSuchUpload"},
		{"AccessDenied", serviceError(403, "AccessDenied"), storage.ErrPermission, false, nil, "HTTP 403 AccessDenied"},
		{"SignatureDoesNotMatch", serviceError(403, "SignatureDoesNotMatch"), storage.ErrPermission, false, nil, "HTTP 403 SignatureDoesNotMatch"},
		{"HeadForbidden", &ResponseError{StatusCode: 403}, storage.ErrPermission, false, nil, "HTTP 403 Forbidden"},
		{"PreconditionFailed", serviceError(412, "PreconditionFailed"), storage.ErrExist, false, nil, "HTTP 412 PreconditionFailed"},
		{"KeyTooLong", serviceError(400, "KeyTooLongError"), storage.ErrInvalid, false, nil, "HTTP 400 KeyTooLongError"},
		{"Conflict", serviceError(409, "ConditionalRequestConflict"), nil, false, nil, "HTTP 409 ConditionalRequestConflict"},
		{"InternalError", serviceError(500, "InternalError"), nil, false, nil, "HTTP 500 InternalError"},
		{"SlowDown", serviceError(503, "SlowDown"), nil, false, nil, "HTTP 503 SlowDown"},
		{"ExpiredToken", serviceError(400, "ExpiredToken"), nil, false, nil, "HTTP 400 ExpiredToken"},
		{"Network", &url.Error{Op: "Get", URL: "https://x/the-bucket/repo/a/b", Err: netErr}, nil, false, netErr, "connection refused"},
		{"Cancelled", &url.Error{Op: "Get", URL: "https://x/the-bucket/repo/a/b", Err: context.Canceled}, nil, false, context.Canceled, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := s.translate("get", "a/b", tc.err)
			for _, sentinel := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrPermission, storage.ErrInvalid} {
				if got := errors.Is(err, sentinel); got != (sentinel == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, got)
				}
			}
			inChain := tc.inChain
			if inChain == nil {
				inChain = tc.err
			}
			if !errors.Is(err, inChain) {
				t.Errorf("translated error %v lost the original error", err)
			}
			if got := strings.Contains(err.Error(), `bucket "the-bucket"`); got != tc.nameBucket {
				t.Errorf("error %q says the bucket is missing: %v, want %v", err, got, tc.nameBucket)
			}
			if !strings.Contains(err.Error(), "get s3://the-bucket/repo/a/b: ") {
				t.Errorf("error %q does not name the operation, bucket and key", err)
			}
			if !strings.Contains(err.Error(), tc.status) {
				t.Errorf("error %q does not contain %q", err, tc.status)
			}
			if strings.Count(err.Error(), "the-bucket/repo/a/b") != 1 {
				t.Errorf("error %q names the object more than once", err)
			}
			// What the retry decorator retries: everything without a sentinel.
			if got := storage.Permanent(err); got != (tc.want != nil || tc.inChain == context.Canceled) {
				t.Errorf("storage.Permanent(%v) = %v", err, got)
			}
		})
	}
	if !isConflict(serviceError(409, "ConditionalRequestConflict")) || isConflict(serviceError(412, "PreconditionFailed")) {
		t.Error("isConflict misclassifies 409/412")
	}
}

func TestInvalidKeys(t *testing.T) {
	t.Parallel()
	s, err := New(t.Context(), validConfig())
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", maxKeyLen)
	if _, err := s.objectKey(long); err != nil {
		t.Errorf("key of %d bytes at the root: %v", maxKeyLen, err)
	}
	cfg := validConfig()
	cfg.Prefix = "repo"
	s, err = New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.objectKey(long); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("key longer than %d bytes with its prefix: %v, want ErrInvalid", maxKeyLen, err)
	}
	if _, err := s.Get(t.Context(), "a", storage.Range{Offset: -1}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("negative range offset: %v, want ErrInvalid", err)
	}
	if err := s.List(t.Context(), "/abs", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("List(/abs) = %v, want ErrInvalid", err)
	}
}

// conflictProxy is a reverse proxy in front of the test service that
// answers the first n conditional writes (requests with If-None-Match) to
// each path with 409 ConditionalRequestConflict, as S3 does while another
// conditional write of the key is in flight; MinIO serialises such writes
// and never sends it.
type conflictProxy struct {
	mu       sync.Mutex
	left     map[string]int
	n        int
	injected int
}

func (p *conflictProxy) inject(r *http.Request) bool {
	if r.Header.Get("If-None-Match") == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	left, ok := p.left[r.URL.Path]
	if !ok {
		left = p.n
	}
	if left == 0 {
		return false
	}
	p.left[r.URL.Path] = left - 1
	p.injected++
	return true
}

// startProxy serves handler on a local plain-HTTP address, closed at the
// end of the test; forward passes a request on to cfg's service unchanged
// (the Host header kept, since the signature covers it).
func startProxy(t *testing.T, cfg Config, handler func(forward http.Handler) http.Handler) string {
	t.Helper()
	o, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTransport(o)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(o.baseURL)
	if err != nil {
		t.Fatal(err)
	}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: tr,
	}
	srv := httptest.NewServer(handler(forward))
	t.Cleanup(srv.Close)
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL
}

func startConflictProxy(t *testing.T, cfg Config, n int) (*conflictProxy, string) {
	t.Helper()
	p := &conflictProxy{left: map[string]int{}, n: n}
	return p, startProxy(t, cfg, func(rp http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p.inject(r) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusConflict)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code>`+
					`<Message>A conflicting conditional operation is currently in progress against this resource.</Message></Error>`)
				return
			}
			rp.ServeHTTP(w, r)
		})
	})
}

// TestConditionalConflictIsRetried checks that PutIfAbsent retries a 409
// ConditionalRequestConflict on PutObject and on CompleteMultipartUpload
// and ends with the object stored, or with ErrExist (and the upload
// aborted) when the other writer won. It also runs the driver over plain
// HTTP through an http:// endpoint.
func TestConditionalConflictIsRetried(t *testing.T) {
	t.Parallel()
	cfg, admin := testBucket(t)
	proxy, endpoint := startConflictProxy(t, cfg, 2)
	pc := cfg
	pc.Endpoint, pc.CAFile, pc.VerifyTLS = endpoint, "", true
	s := prefixStore(t, pc)
	ctx := t.Context()

	if err := s.PutIfAbsent(ctx, "small", strings.NewReader("small")); err != nil {
		t.Fatalf("PutIfAbsent through two conflicts: %v", err)
	}
	big := bytes.Repeat([]byte("b"), DefaultPartSize+10)
	if err := s.PutIfAbsent(ctx, "big", bytes.NewReader(big)); err != nil {
		t.Fatalf("multipart PutIfAbsent through two conflicts: %v", err)
	}
	for k, size := range map[string]int64{"small": 5, "big": int64(len(big))} {
		if info, err := s.Stat(ctx, k); err != nil || info.Size != size {
			t.Fatalf("Stat(%s) = %+v, %v; want size %d", k, info, err, size)
		}
	}
	// A conflict on completing while the key exists means the other
	// writer won: ErrExist, the upload aborted, the object unchanged.
	proxy.mu.Lock()
	proxy.left, proxy.n = map[string]int{}, 1
	proxy.mu.Unlock()
	k, _ := s.objectKey("big")
	if err := s.putMultipart(ctx, "big", k, s.getBuffer(), bytes.NewReader([]byte("x")), true); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("conditional multipart upload of an existing key after a conflict = %v, want ErrExist", err)
	}
	if info, err := s.Stat(ctx, "big"); err != nil || info.Size != int64(len(big)) {
		t.Fatalf("Stat(big) = %+v, %v after a refused upload", info, err)
	}
	if left := unfinishedUploads(t, admin, s.prefix); len(left) != 0 {
		t.Fatalf("unfinished uploads left: %v", left)
	}
	proxy.mu.Lock()
	injected := proxy.injected
	proxy.mu.Unlock()
	if injected != 5 {
		t.Fatalf("proxy injected %d conflicts, want 5 (2 per conditional write, 1 for the losing upload)", injected)
	}
}
