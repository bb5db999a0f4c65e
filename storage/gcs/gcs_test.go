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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/gcs"
	"github.com/pgsidecar/pgsidecar/storage/gcs/gcstest"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// testProject is the project of the test service's buckets.
const testProject = gcstest.Project

// repoPath is the prefix the conformance stores use, pgBackRest's default
// repo1-path without its leading slash.
const repoPath = "var/lib/pgbackrest"

func endpoint() string { return gcstest.Endpoint() }

// emulator returns the test service, ending the test through
// storagetest.Unavailable when the service does not answer.
func emulator(t *testing.T) gcstest.Service { return gcstest.Require(t) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newBucket creates an empty bucket that is emptied and removed when the
// test ends.
func newBucket(t *testing.T, c gcstest.Service) string {
	t.Helper()
	return c.NewBucket(t, "pgsidecar-test-")
}

// writeObject stores data under name straight through the JSON API.
func writeObject(t *testing.T, c gcstest.Service, bucket, name string, data []byte) {
	t.Helper()
	c.WriteObject(t, bucket, name, data)
}

// objectNames lists every object of the bucket straight through the JSON API.
func objectNames(t *testing.T, c gcstest.Service, bucket string) []string {
	t.Helper()
	return c.ObjectNames(t, bucket)
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
	bucket := "pgsidecar-test-missing-" + randomHex(4)
	s := newStore(t, emulatorConfig(bucket, ""))
	err := s.List(t.Context(), "", func(storage.ObjectInfo) error { return nil })
	if !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), bucket) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("List in a missing bucket = %v, want ErrNotExist naming the bucket and the status", err)
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

	sessionRequests int // requests to resumable upload sessions
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
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			f.serveToken(w, r)
			return
		}
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		if r.URL.Query().Has("upload_id") {
			f.sessionRequests++
		}
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
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Iat   int64  `json:"iat"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Iss != "backup@pgsidecar-test.iam.gserviceaccount.com" ||
		claims.Scope != "https://www.googleapis.com/auth/devstorage.read_write" || claims.Aud != f.srv.URL+"/token" ||
		claims.Exp-claims.Iat != 3600 || time.Since(time.Unix(claims.Iat, 0)).Abs() > time.Minute {
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

const metadataToken = "token-from-metadata-server"

// newMetadataServer serves the token of the GCE/GKE metadata server to
// requests that carry Metadata-Flavor: Google, and returns its token URL.
func newMetadataServer(t *testing.T) string {
	t.Helper()
	const path = "/computeMetadata/v1/instance/service-accounts/default/token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodGet || r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "not a metadata token request", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, metadataToken)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + path
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
		{"AutoFromMetadataServer", func(f *tlsFront, _ *testing.T) gcs.Config {
			return gcs.Config{Endpoint: f.host(), KeyType: gcs.KeyTypeAuto, VerifyTLS: true, CAFile: f.caFile}
		}, "Bearer " + metadataToken, false},
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
			// The big object of the round trip then goes up in three chunks.
			cfg.ChunkSize = 256 << 10
			var s *gcs.Store
			if cfg.KeyType == gcs.KeyTypeAuto {
				var err error
				if s, err = gcs.NewWithMetadataServer(t.Context(), cfg, newMetadataServer(t)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
			} else {
				s = newStore(t, cfg)
			}
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
			if f.sessionRequests < 3 {
				t.Fatalf("%d requests to upload sessions went through the front, want the 3 chunks", f.sessionRequests)
			}
		})
	}
}

// faultTransport fails the requests that match, before they reach the
// service: with a network error, or with status when it is not 0.
type faultTransport struct {
	base   http.RoundTripper
	match  func(req *http.Request, n int) bool // n counts the requests, from 1
	status int

	mu        sync.Mutex
	seen      int      // requests the match function was asked about
	failed    int      // requests failed
	sessionID []string // upload ids seen
}

var errInjected = errors.New("injected network failure")

func (f *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	if id := req.URL.Query().Get("upload_id"); id != "" && !slices.Contains(f.sessionID, id) {
		f.sessionID = append(f.sessionID, id)
	}
	f.seen++
	fail := f.match(req, f.seen)
	if fail {
		f.failed++
	}
	f.mu.Unlock()
	if !fail {
		return f.base.RoundTrip(req)
	}
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	if f.status == 0 {
		return nil, errInjected
	}
	return &http.Response{
		StatusCode: f.status, Status: http.StatusText(f.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(strings.NewReader(`{"error":{"code":503,"message":"injected","errors":[{"reason":"backendError"}]}}`)),
		Request: req,
	}, nil
}

// isChunk reports whether req sends bytes to an upload session; final
// selects the last chunk (whose Content-Range names the total).
func isChunk(req *http.Request, final bool) bool {
	cr := req.Header.Get("Content-Range")
	return req.Method == http.MethodPut && req.URL.Query().Has("upload_id") && cr != "" &&
		!strings.HasPrefix(cr, "bytes */") && strings.HasSuffix(cr, "/*") != final
}

// TestUploadRetries checks that upload requests that fail on the way are
// sent again, so that a Put of a stream the caller cannot replay still
// succeeds with the right content, and that a lasting failure leaves no
// object.
func TestUploadRetries(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	small := []byte("a small object")
	big := make([]byte, 700<<10) // three chunks of 256 KiB
	_, _ = rand.Read(big)
	for _, tc := range []struct {
		name    string
		data    []byte
		status  int
		match   func(req *http.Request, n int) bool
		wantErr bool
	}{
		{"SingleRequestDroppedOnce", small, 0, func(r *http.Request, n int) bool {
			return n == 1 && r.URL.Query().Get("uploadType") == "multipart"
		}, false},
		{"SingleRequest503Once", small, http.StatusServiceUnavailable, func(r *http.Request, n int) bool {
			return n == 1 && r.URL.Query().Get("uploadType") == "multipart"
		}, false},
		{"SessionStartDroppedOnce", big, 0, func(r *http.Request, n int) bool {
			return n == 1 && r.Method == http.MethodPost && r.URL.Query().Get("uploadType") == "resumable"
		}, false},
		// Requests: 1 starts the session, 2 and 3 send the first chunks.
		{"MiddleChunkDroppedOnce", big, 0, func(r *http.Request, n int) bool {
			return isChunk(r, false) && strings.HasPrefix(r.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", 256<<10)) && n == 3
		}, false},
		{"FinalChunk503Twice", big, http.StatusServiceUnavailable, func(r *http.Request, n int) bool {
			return isChunk(r, true) && n <= 5
		}, false},
		{"MiddleChunkAlwaysDropped", big, 0, func(r *http.Request, _ int) bool { return isChunk(r, false) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := emulatorConfig(newBucket(t, c), "repo")
			cfg.ChunkSize = 256 << 10
			ft := &faultTransport{match: tc.match, status: tc.status}
			s, err := gcs.NewWithTransport(t.Context(), cfg, func(rt http.RoundTripper) http.RoundTripper {
				ft.base = rt
				return ft
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			// A stream the caller cannot replay.
			err = s.Put(ctx, "obj", io.MultiReader(bytes.NewReader(tc.data)))
			ft.mu.Lock()
			failed, ids := ft.failed, slices.Clone(ft.sessionID)
			ft.mu.Unlock()
			if failed == 0 {
				t.Fatal("no request failed; the test did not exercise a retry")
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("Put succeeded although every middle chunk failed")
				}
				if storage.Permanent(err) || !errors.Is(err, errInjected) {
					t.Errorf("Put error %v: want the transient network failure, no sentinel", err)
				}
				for _, id := range ids {
					if strings.Contains(err.Error(), id) {
						t.Errorf("Put error %q reveals the upload session id", err)
					}
				}
				if failed != 4 {
					t.Errorf("%d attempts at the failing chunk, want 4", failed)
				}
				if _, err := s.Stat(t.Context(), "obj"); !errors.Is(err, storage.ErrNotExist) {
					t.Fatalf("Stat after a failed Put = %v, want ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Put with %d failed requests: %v", failed, err)
			}
			got, err := storage.ReadAll(t.Context(), s, "obj")
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("object holds %d bytes (%v) that differ from the %d written", len(got), err, len(tc.data))
			}
		})
	}
}

// TestStatusMapping checks the sentinels and messages of failed answers
// end to end, with the failures injected below the driver.
func TestStatusMapping(t *testing.T) {
	t.Parallel()
	c := emulator(t)
	bucket := newBucket(t, c)
	for _, tc := range []struct {
		status int
		want   error // nil: no sentinel
	}{
		{http.StatusUnauthorized, storage.ErrPermission},
		{http.StatusForbidden, storage.ErrPermission},
		{http.StatusInternalServerError, nil},
	} {
		ft := &faultTransport{status: tc.status, match: func(*http.Request, int) bool { return true }}
		s, err := gcs.NewWithTransport(t.Context(), emulatorConfig(bucket, "repo"), func(rt http.RoundTripper) http.RoundTripper {
			ft.base = rt
			return ft
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := t.Context()
		_, statErr := s.Stat(ctx, "archive.info")
		_, getErr := s.Get(ctx, "archive.info", storage.Range{})
		for op, err := range map[string]error{
			"Stat":   statErr,
			"Get":    getErr,
			"Delete": s.Delete(ctx, "archive.info"),
			"List":   s.List(ctx, "", func(storage.ObjectInfo) error { return nil }),
		} {
			if err == nil {
				t.Errorf("%d: %s succeeded", tc.status, op)
				continue
			}
			for _, sentinel := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrPermission, storage.ErrInvalid} {
				if errors.Is(err, sentinel) != (sentinel == tc.want) {
					t.Errorf("%d: %s error %q: errors.Is(%v) = %v", tc.status, op, err, sentinel, sentinel != tc.want)
				}
			}
			msg := err.Error()
			if !strings.Contains(msg, strconv.Itoa(tc.status)) || !strings.Contains(msg, bucket) ||
				(op != "List" && !strings.Contains(msg, `object "repo/archive.info"`)) {
				t.Errorf("%d: %s error %q does not name the status, bucket and object", tc.status, op, msg)
			}
		}
	}
}
