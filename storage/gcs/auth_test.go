package gcs

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tokenServer is an OAuth 2.0 token endpoint over TLS that accepts JWT
// bearer grants signed by pub and answers with numbered tokens.
type tokenServer struct {
	srv      *httptest.Server
	pub      *rsa.PublicKey
	email    string
	issued   atomic.Int32
	answer   atomic.Value // func(w) to answer instead, or nil
	delay    time.Duration
	problems chan string
}

func newTokenServer(t *testing.T, pub *rsa.PublicKey, email string, delay time.Duration) *tokenServer {
	t.Helper()
	ts := &tokenServer{pub: pub, email: email, delay: delay, problems: make(chan string, 100)}
	ts.srv = httptest.NewTLSServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) problem(w http.ResponseWriter, format string, args ...any) {
	ts.problems <- fmt.Sprintf(format, args...)
	http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if f, ok := ts.answer.Load().(func(http.ResponseWriter)); ok && f != nil {
		f(w)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		ts.problem(w, "%s %s with content type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		return
	}
	if err := r.ParseForm(); err != nil {
		ts.problem(w, "form: %v", err)
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		ts.problem(w, "grant_type %q", g)
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		ts.problem(w, "assertion has %d parts", len(parts))
		return
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		ts.problem(w, "signature: %v", err)
		return
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(ts.pub, crypto.SHA256, digest[:], sig); err != nil {
		ts.problem(w, "signature does not verify: %v", err)
		return
	}
	var header struct{ Alg, Typ, Kid string }
	hb, _ := enc.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &header); err != nil || header.Alg != "RS256" || header.Typ != "JWT" || header.Kid != "key-7" {
		ts.problem(w, "header %s: %v", hb, err)
		return
	}
	var claims struct {
		Iss, Scope, Aud string
		Exp, Iat        int64
	}
	cb, _ := enc.DecodeString(parts[1])
	if err := json.Unmarshal(cb, &claims); err != nil || claims.Iss != ts.email || claims.Scope != scopeReadWrite ||
		claims.Aud != ts.srv.URL+"/token" || claims.Exp != claims.Iat+3600 {
		ts.problem(w, "claims %s: %v", cb, err)
		return
	}
	time.Sleep(ts.delay)
	n := ts.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"access_token":"sa-token-%d","token_type":"Bearer","expires_in":3600}`, n)
}

// newServiceAccount writes a key file for a token server and loads it.
func newServiceAccount(t *testing.T, delay time.Duration) (*serviceAccount, *tokenServer) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const email = "backup@pgsidecar-test.iam.gserviceaccount.com"
	ts := newTokenServer(t, &key.PublicKey, email, delay)
	// PKCS #1, as older key files hold it; the other tests use PKCS #8.
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	b, err := json.Marshal(map[string]string{
		"type": "service_account", "client_email": email, "private_key": string(pemKey),
		"private_key_id": "key-7", "token_uri": ts.srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sa, err := loadServiceAccount(path, ts.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return sa, ts
}

func noProblems(t *testing.T, ts *tokenServer) {
	t.Helper()
	for {
		select {
		case p := <-ts.problems:
			t.Errorf("token request: %s", p)
		default:
			return
		}
	}
}

func TestServiceAccountTokenCached(t *testing.T) {
	t.Parallel()
	sa, ts := newServiceAccount(t, 0)
	clk := &clock{t: time.Now()}
	c := newCachedToken(sa.fetch, clk.now)
	ctx := t.Context()

	for range 3 {
		got, err := c.authorization(ctx)
		if err != nil || got != "Bearer sa-token-1" {
			t.Fatalf("authorization = %q, %v; want the first token", got, err)
		}
	}
	// Five minutes before the hour is up the token is replaced.
	clk.advance(54 * time.Minute)
	if got, _ := c.authorization(ctx); got != "Bearer sa-token-1" {
		t.Fatalf("after 54 minutes: %q, want the first token still", got)
	}
	clk.advance(2 * time.Minute)
	if got, err := c.authorization(ctx); err != nil || got != "Bearer sa-token-2" {
		t.Fatalf("after 56 minutes: %q, %v; want a second token", got, err)
	}
	// A token the service refused is not used again.
	c.reject("Bearer sa-token-2")
	if got, err := c.authorization(ctx); err != nil || got != "Bearer sa-token-3" {
		t.Fatalf("after a refusal: %q, %v; want a third token", got, err)
	}
	c.reject("Bearer sa-token-2") // a stale refusal keeps the current token
	if got, _ := c.authorization(ctx); got != "Bearer sa-token-3" {
		t.Fatalf("after a stale refusal: %q, want the third token", got)
	}
	if n := ts.issued.Load(); n != 3 {
		t.Fatalf("%d tokens issued, want 3", n)
	}
	noProblems(t, ts)
}

func TestServiceAccountConcurrentFetchOnce(t *testing.T) {
	t.Parallel()
	sa, ts := newServiceAccount(t, 200*time.Millisecond)
	c := newCachedToken(sa.fetch, time.Now)
	const n = 32
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = c.authorization(t.Context()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != "Bearer sa-token-1" {
			t.Fatalf("caller %d: %q, %v", i, got[i], errs[i])
		}
	}
	if k := ts.issued.Load(); k != 1 {
		t.Fatalf("%d concurrent callers fetched %d tokens, want 1", n, k)
	}
	noProblems(t, ts)

	// A waiter whose context ends stops waiting for the fetch in progress.
	c2 := newCachedToken(sa.fetch, time.Now)
	started := make(chan struct{})
	go func() {
		close(started)
		_, _ = c2.authorization(context.Background())
	}()
	<-started
	time.Sleep(50 * time.Millisecond) // let the first caller take the lock
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c2.authorization(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with an expired context = %v, want DeadlineExceeded", err)
	}
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	sa, ts := newServiceAccount(t, 0)
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		permission bool
		want       string
	}{
		{"InvalidGrant", http.StatusBadRequest, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`, true, "[invalid_grant] Invalid JWT Signature."},
		{"Unauthorized", http.StatusUnauthorized, `{"error":"unauthorized_client"}`, true, "401"},
		{"ServerError", http.StatusInternalServerError, `oops`, false, "500"},
		{"TooMany", http.StatusTooManyRequests, `{"error":"rate_limit"}`, false, "429"},
		{"NotJSON", http.StatusOK, `<html>`, false, "not JSON"},
		{"NoToken", http.StatusOK, `{"token_type":"Bearer","expires_in":3600}`, false, "lacks access_token"},
		{"NoExpiry", http.StatusOK, `{"access_token":"x","token_type":"Bearer"}`, false, "expires_in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.answer.Store(func(w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			c := newCachedToken(sa.fetch, time.Now)
			_, err := c.authorization(t.Context())
			if err == nil {
				t.Fatal("authorization succeeded")
			}
			if errors.Is(err, storage.ErrPermission) != tc.permission {
				t.Errorf("error %q: matches ErrPermission = %v, want %v", err, !tc.permission, tc.permission)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ts.srv.URL) {
				t.Errorf("error %q does not contain %q and the token URL", err, tc.want)
			}
			if strings.Contains(err.Error(), "eyJ") {
				t.Errorf("error %q quotes the signed assertion", err)
			}
		})
	}
	// With the endpoint healthy again the next call gets a token.
	ts.answer.Store((func(http.ResponseWriter))(nil))
	c := newCachedToken(sa.fetch, time.Now)
	if got, err := c.authorization(t.Context()); err != nil || !strings.HasPrefix(got, "Bearer sa-token-") {
		t.Fatalf("after recovery: %q, %v", got, err)
	}
}

func TestMetadataToken(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Metadata-Flavor") != "Google" || r.Method != http.MethodGet {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/token" {
			http.NotFound(w, r)
			return
		}
		_, _ = fmt.Fprintf(w, `{"access_token":"md-%d","expires_in":"120","token_type":"Bearer"}`, requests.Load())
	}))
	t.Cleanup(srv.Close)
	mc, mt := newMetadataClient()
	t.Cleanup(mt.CloseIdleConnections)
	clk := &clock{t: time.Now()}
	m := &metadataToken{url: srv.URL + "/computeMetadata/v1/instance/service-accounts/default/token", client: mc}
	c := newCachedToken(m.fetch, clk.now)
	if got, err := c.authorization(t.Context()); err != nil || got != "Bearer md-1" {
		t.Fatalf("authorization = %q, %v", got, err)
	}
	// A two-minute token is refreshed after half its life.
	clk.advance(59 * time.Second)
	if got, _ := c.authorization(t.Context()); got != "Bearer md-1" {
		t.Fatalf("after 59s: %q", got)
	}
	clk.advance(2 * time.Second)
	if got, err := c.authorization(t.Context()); err != nil || got != "Bearer md-2" {
		t.Fatalf("after 61s: %q, %v", got, err)
	}

	// No service account on the instance: a refusal, not a transient error.
	bad := &metadataToken{url: srv.URL + "/computeMetadata/v1/instance/service-accounts/none/token", client: mc}
	_, err := newCachedToken(bad.fetch, time.Now).authorization(t.Context())
	if !errors.Is(err, storage.ErrPermission) || !strings.Contains(err.Error(), "metadata server") {
		t.Fatalf("missing service account = %v, want ErrPermission naming the metadata server", err)
	}
}

func TestStaticToken(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"ya29.abc":        "Bearer ya29.abc",
		"Bearer ya29.abc": "Bearer ya29.abc",
		"bearer ya29.abc": "bearer ya29.abc",
	} {
		if got, _ := newStaticToken(key).authorization(t.Context()); got != want {
			t.Errorf("key %q: Authorization %q, want %q", key, got, want)
		}
	}
}
