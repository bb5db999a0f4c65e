package gcs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/gcs"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// testProject is the project buckets are created in; fake-gcs-server
// accepts any.
const testProject = "pgsidecar-test"

// repoPath is the prefix the conformance stores use, pgBackRest's default
// repo1-path without its leading slash.
const repoPath = "var/lib/pgbackrest"

func endpoint() string {
	return storagetest.Env("PGSIDECAR_TEST_GCS_ENDPOINT", "http://127.0.0.1:4443/storage/v1/")
}

// emulator returns an SDK client for the test service, ending the test
// through storagetest.Unavailable when the service does not answer.
func emulator(t *testing.T) *gstorage.Client {
	t.Helper()
	ep := endpoint()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep, "/")+"/b?project="+testProject, nil)
	if err != nil {
		t.Fatalf("bad PGSIDECAR_TEST_GCS_ENDPOINT %q: %v", ep, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: status %s", req.URL, resp.Status)
		}
	}
	if err != nil {
		storagetest.Unavailable(t, "gcs", err)
	}
	c, err := gstorage.NewClient(t.Context(), option.WithoutAuthentication(), option.WithEndpoint(ep))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newBucket creates an empty bucket that is emptied and removed when the
// test ends.
func newBucket(t *testing.T, c *gstorage.Client) string {
	t.Helper()
	name := "pgsidecar-test-" + randomHex(8)
	if err := c.Bucket(name).Create(t.Context(), testProject, nil); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b := c.Bucket(name)
		it := b.Objects(ctx, nil)
		for {
			attrs, err := it.Next()
			if err != nil {
				break
			}
			_ = b.Object(attrs.Name).Delete(ctx)
		}
		if err := b.Delete(ctx); err != nil {
			t.Logf("delete bucket %s: %v", name, err)
		}
	})
	return name
}

// writeObject stores data under name straight through the SDK.
func writeObject(t *testing.T, c *gstorage.Client, bucket, name string, data []byte) {
	t.Helper()
	w := c.Bucket(bucket).Object(name).NewWriter(t.Context())
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}

// objectNames lists every object of the bucket straight through the SDK.
func objectNames(t *testing.T, c *gstorage.Client, bucket string) []string {
	t.Helper()
	var names []string
	it := c.Bucket(bucket).Objects(t.Context(), nil)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names
		}
		if err != nil {
			t.Fatalf("list bucket %s: %v", bucket, err)
		}
		names = append(names, attrs.Name)
	}
}

func emulatorConfig(bucket, prefix string) gcs.Config {
	return gcs.Config{
		Bucket:    bucket,
		Prefix:    prefix,
		Endpoint:  endpoint(),
		KeyType:   gcs.KeyTypeNone,
		VerifyTLS: true,
	}
}

func newStore(t *testing.T, cfg gcs.Config) *gcs.Store {
	t.Helper()
	s, err := gcs.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		bucket := newBucket(t, c)
		// Neighbours of the repository prefix that the store must never see:
		// the suite checks that a fresh store lists nothing.
		writeObject(t, c, bucket, "var/lib/pgbackrest2/archive/db/archive.info", []byte("other repository"))
		writeObject(t, c, bucket, "var/lib/pgbackrest-old", []byte("sibling"))
		writeObject(t, c, bucket, "unrelated", []byte("x"))
		return newStore(t, emulatorConfig(bucket, "/"+repoPath+"/"))
	}, storagetest.Options{})
}

func TestPrefixLayout(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	bucket := newBucket(t, c)
	repo := newStore(t, emulatorConfig(bucket, "/"+repoPath))
	root := newStore(t, emulatorConfig(bucket, ""))
	ctx := t.Context()

	if err := repo.Put(ctx, "archive/db/archive.info", strings.NewReader("info")); err != nil {
		t.Fatal(err)
	}
	if err := root.Put(ctx, "top", strings.NewReader("top")); err != nil {
		t.Fatal(err)
	}
	want := []string{"top", repoPath + "/archive/db/archive.info"}
	if got := objectNames(t, c, bucket); !slices.Equal(got, want) {
		t.Fatalf("bucket holds %v, want %v", got, want)
	}
	var keys []string
	if err := root.List(ctx, "", func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("bucket-root store lists %v, want %v", keys, want)
	}
	keys = nil
	if err := repo.List(ctx, "", func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"archive/db/archive.info"}) {
		t.Fatalf("repository store lists %v", keys)
	}
	rc, err := root.Get(ctx, repoPath+"/archive/db/archive.info", storage.Range{Offset: 1, Length: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "nf" {
		t.Fatalf("ranged read through the bucket-root store = %q, %v", b, err)
	}
}

// TestFolderPlaceholdersSkipped checks that List skips names that are not
// valid keys, such as the "folder/" objects the console creates.
func TestFolderPlaceholdersSkipped(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	bucket := newBucket(t, c)
	writeObject(t, c, bucket, "repo/archive/", nil)
	writeObject(t, c, bucket, "repo/archive/db/archive.info", []byte("x"))
	s := newStore(t, emulatorConfig(bucket, "repo"))
	var keys []string
	if err := s.List(t.Context(), "", func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"archive/db/archive.info"}) {
		t.Fatalf("List = %v, want only the object", keys)
	}
}

func TestMissingBucket(t *testing.T) {
	t.Parallel()
	emulator(t)
	s := newStore(t, emulatorConfig("pgsidecar-test-missing-"+randomHex(4), ""))
	err := s.List(t.Context(), "", func(storage.ObjectInfo) error { return nil })
	if !errors.Is(err, storage.ErrNotExist) || !errors.Is(err, gstorage.ErrBucketNotExist) {
		t.Fatalf("List in a missing bucket = %v, want ErrNotExist with the SDK's ErrBucketNotExist", err)
	}
	if err := s.Put(t.Context(), "k", strings.NewReader("x")); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Put in a missing bucket = %v, want ErrNotExist", err)
	}
}

// lostResponse forwards the first upload request that carries
// ifGenerationMatch=0 to the service, then drops the response and reports a
// broken connection, as a network failure after the commit would.
type lostResponse struct {
	base    http.RoundTripper
	dropped atomic.Bool
}

func (l *lostResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(req.URL.Path, "/upload/") && req.URL.Query().Get("ifGenerationMatch") == "0" &&
		resp.StatusCode == http.StatusOK && l.dropped.CompareAndSwap(false, true) {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return nil, io.ErrUnexpectedEOF
	}
	return resp, nil
}

// TestPutIfAbsentLostResponse checks that a conditional create whose
// response is lost, and whose retry then meets its own object, succeeds.
func TestPutIfAbsentLostResponse(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	bucket := newBucket(t, c)
	lr := &lostResponse{}
	s, err := gcs.NewWithTransport(t.Context(), emulatorConfig(bucket, "repo"), func(rt http.RoundTripper) http.RoundTripper {
		lr.base = rt
		return lr
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.PutIfAbsent(t.Context(), "lock", strings.NewReader("mine")); err != nil {
		t.Fatalf("PutIfAbsent after a lost response = %v, want nil", err)
	}
	if !lr.dropped.Load() {
		t.Fatal("no upload response was dropped; the test did not exercise the retry")
	}
	if err := s.PutIfAbsent(t.Context(), "lock", strings.NewReader("theirs")); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("second PutIfAbsent = %v, want ErrExist", err)
	}
	rc, err := s.Get(t.Context(), "lock", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "mine" {
		t.Fatalf("lock holds %q, want mine", b)
	}
}

// TestPutIfAbsentResumable checks the conditional create of objects larger
// than one chunk, whose precondition the service checks when the resumable
// upload is finalised, including racing writers.
func TestPutIfAbsentResumable(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	cfg := emulatorConfig(newBucket(t, c), "repo")
	cfg.ChunkSize = 256 << 10
	s := newStore(t, cfg)
	ctx := t.Context()
	data := func(i int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, 700<<10)
		copy(b, fmt.Sprintf("writer-%d", i))
		return b
	}
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.PutIfAbsent(ctx, "lease", bytes.NewReader(data(i))) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created the object", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExist):
			t.Fatalf("writer %d: %v, want nil or ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the object")
	}
	if err := s.PutIfAbsent(ctx, "lease", bytes.NewReader(data(9))); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("PutIfAbsent(existing) = %v, want ErrExist", err)
	}
	rc, err := s.Get(ctx, "lease", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || !bytes.Equal(b, data(winner)) {
		t.Fatalf("object holds %d bytes (%v), not writer %d's", len(b), err, winner)
	}
}

// tlsFront is an HTTPS reverse proxy in front of the emulator that records
// the Authorization header of every storage request and serves an OAuth
// token endpoint at /token for service-account keys.
type tlsFront struct {
	srv      *httptest.Server
	caFile   string
	caDir    string
	pub      *rsa.PublicKey // the service-account key's public half
	mu       sync.Mutex
	auth     []string // Authorization of each storage request
	tokenErr []string // problems with token requests
	tokens   int
}

const saToken = "token-from-service-account"

func newTLSFront(t *testing.T) *tlsFront {
	t.Helper()
	target, err := url.Parse(endpoint())
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	f := &tlsFront{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization")
		},
		ModifyResponse: func(resp *http.Response) error {
			// Keep resumable upload sessions going through the proxy.
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", strings.Replace(loc, target.Scheme+"://"+target.Host, f.srv.URL, 1))
			}
			return nil
		},
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			f.serveToken(w, r)
			return
		}
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	// The UnknownAuthorityRejected case makes handshakes fail on purpose.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	dir := t.TempDir()
	f.caDir = filepath.Join(dir, "certs")
	if err := os.Mkdir(f.caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	f.caFile = filepath.Join(dir, "ca.pem")
	for _, p := range []string{f.caFile, filepath.Join(f.caDir, "front.pem")} {
		if err := os.WriteFile(p, certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// host is the proxy's address in pgBackRest's host:port endpoint form.
func (f *tlsFront) host() string { return strings.TrimPrefix(f.srv.URL, "https://") }

// serveToken answers a JWT-bearer grant whose assertion the service-account
// key signed.
func (f *tlsFront) serveToken(w http.ResponseWriter, r *http.Request) {
	problem := func(format string, args ...any) {
		f.mu.Lock()
		f.tokenErr = append(f.tokenErr, fmt.Sprintf(format, args...))
		f.mu.Unlock()
		http.Error(w, "bad token request", http.StatusBadRequest)
	}
	if err := r.ParseForm(); err != nil {
		problem("parse form: %v", err)
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		problem("grant_type %q", g)
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		problem("assertion is not a JWT")
		return
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		problem("signature: %v", err)
		return
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(f.pub, crypto.SHA256, digest[:], sig); err != nil {
		problem("assertion not signed by the service-account key: %v", err)
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		problem("payload: %v", err)
		return
	}
	var claims struct {
		Scope string `json:"scope"`
		Iss   string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Iss != "backup@pgsidecar-test.iam.gserviceaccount.com" ||
		!strings.Contains(claims.Scope, gstorage.ScopeFullControl) {
		problem("claims %s: %v", payload, err)
		return
	}
	f.mu.Lock()
	f.tokens++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, saToken)
}

// serviceKey writes a service-account key file whose token_uri is the
// front's token endpoint.
func (f *tlsFront) serviceKey(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f.pub = &key.PublicKey
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     testProject,
		"private_key_id": "key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "backup@pgsidecar-test.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      f.srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// roundTrip writes, reads back, lists and deletes through s, with one
// object large enough for a multi-chunk resumable upload.
func roundTrip(ctx context.Context, s storage.Store) error {
	big := make([]byte, 600<<10)
	_, _ = rand.Read(big)
	for key, data := range map[string][]byte{"small": []byte("hello"), "big": big} {
		if err := s.Put(ctx, key, bytes.NewReader(data)); err != nil {
			return err
		}
		rc, err := s.Get(ctx, key, storage.Range{})
		if err != nil {
			return err
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("%s: read back %d bytes that differ from the %d written", key, len(got), len(data))
		}
	}
	n := 0
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { n++; return nil }); err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("listed %d objects, want 2", n)
	}
	if err := s.PutIfAbsent(ctx, "small", strings.NewReader("again")); !errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("PutIfAbsent(existing) = %v, want ErrExist", err)
	}
	for _, key := range []string{"small", "big"} {
		if err := s.Delete(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

func TestTLSAndAuthentication(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	const token = "ya29.test-access-token"
	for _, tc := range []struct {
		name     string
		cfg      func(f *tlsFront, t *testing.T) gcs.Config
		wantAuth string // Authorization every storage request must carry
		wantErr  bool   // the round trip must fail (TLS verification)
	}{
		{"TokenWithCAFile", func(f *tlsFront, _ *testing.T) gcs.Config {
			return gcs.Config{Endpoint: f.host(), KeyType: gcs.KeyTypeToken, Key: token, VerifyTLS: true, CAFile: f.caFile}
		}, "Bearer " + token, false},
		{"TokenWithCAPath", func(f *tlsFront, _ *testing.T) gcs.Config {
			return gcs.Config{Endpoint: f.host(), KeyType: gcs.KeyTypeToken, Key: token, VerifyTLS: true, CAPath: f.caDir}
		}, "Bearer " + token, false},
		{"ServiceKeyWithCAFile", func(f *tlsFront, t *testing.T) gcs.Config {
			return gcs.Config{Endpoint: "https://" + f.host(), KeyType: gcs.KeyTypeService, Key: f.serviceKey(t), VerifyTLS: true, CAFile: f.caFile}
		}, "Bearer " + saToken, false},
		{"NoneWithoutVerification", func(f *tlsFront, _ *testing.T) gcs.Config {
			return gcs.Config{Endpoint: f.host(), KeyType: gcs.KeyTypeNone, VerifyTLS: false}
		}, "", false},
		{"UnknownAuthorityRejected", func(f *tlsFront, _ *testing.T) gcs.Config {
			return gcs.Config{Endpoint: f.host(), KeyType: gcs.KeyTypeToken, Key: token, VerifyTLS: true}
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTLSFront(t)
			cfg := tc.cfg(f, t)
			cfg.Bucket = newBucket(t, c)
			cfg.Prefix = "repo"
			s := newStore(t, cfg)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			err := roundTrip(ctx, s)
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.wantErr {
				if err == nil {
					t.Fatal("round trip through a server with an unknown certificate authority succeeded")
				}
				if storage.Permanent(err) {
					t.Errorf("TLS failure %v matches a storage sentinel", err)
				}
				if len(f.auth) != 0 || strings.Contains(err.Error(), token) {
					t.Errorf("credentials reached the server or the error: %d requests, %v", len(f.auth), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			if len(f.auth) == 0 {
				t.Fatal("no request went through the TLS front")
			}
			for i, a := range f.auth {
				if a != tc.wantAuth {
					t.Fatalf("request %d carried Authorization %q, want %q", i, a, tc.wantAuth)
				}
			}
			if len(f.tokenErr) > 0 {
				t.Fatalf("token requests: %v", f.tokenErr)
			}
			if tc.wantAuth == "Bearer "+saToken && f.tokens == 0 {
				t.Fatal("the service-account key was never exchanged for a token")
			}
		})
	}
}
