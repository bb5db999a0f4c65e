package s3

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRefreshingSource checks the cache of temporary credentials: fetched
// once, renewed 5 minutes before they expire, the old ones kept while a
// renewal fails and they last, renewal attempts spaced, and an error once
// they no longer last.
func TestRefreshingSource(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	var (
		calls   int
		failing bool
		serial  int
	)
	fetch := func(context.Context) (credentials, error) {
		calls++
		if failing {
			return credentials{}, errors.New("service down")
		}
		serial++
		return credentials{accessKeyID: fmt.Sprintf("AK%d", serial), secretAccessKey: "s", sessionToken: "t", expires: clock.Now().Add(time.Hour)}, nil
	}
	r := newRefreshingSource(fetch, clock.Now)
	ctx := t.Context()
	step := func(name string, advance time.Duration, wantKey string, wantCalls int) {
		t.Helper()
		clock.Add(advance)
		c, err := r.retrieve(ctx)
		switch {
		case wantKey == "" && err == nil:
			t.Fatalf("%s: got credentials %s, want an error", name, c.accessKeyID)
		case wantKey != "" && (err != nil || c.accessKeyID != wantKey):
			t.Fatalf("%s: got %q, %v; want %s", name, c.accessKeyID, err, wantKey)
		}
		if calls != wantCalls {
			t.Fatalf("%s: %d fetches, want %d", name, calls, wantCalls)
		}
	}
	step("first", 0, "AK1", 1)
	step("cached", time.Minute, "AK1", 1)
	step("still cached 6 min before expiry", 53*time.Minute, "AK1", 1)
	step("renewed 4 min before expiry", 2*time.Minute, "AK2", 2)
	step("new ones cached", time.Second, "AK2", 2)
	failing = true
	step("failed renewal keeps the old ones", 56*time.Minute, "AK2", 3)
	step("no new attempt within 10s", 5*time.Second, "AK2", 3)
	step("another attempt after 10s", 6*time.Second, "AK2", 4)
	step("error once they expire within a minute", 3*time.Minute+30*time.Second, "", 5)
	failing = false
	step("recovers", time.Second, "AK3", 6)

	// A caller waiting for a fetch in progress gives up with its context.
	block := make(chan struct{})
	slow := newRefreshingSource(func(ctx context.Context) (credentials, error) {
		<-block
		return credentials{accessKeyID: "AK", secretAccessKey: "s", expires: clock.Now().Add(time.Hour)}, nil
	}, clock.Now)
	done := make(chan error, 1)
	go func() { _, err := slow.retrieve(context.Background()); done <- err }()
	for len(slow.sem) == 0 {
		time.Sleep(time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := slow.retrieve(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting caller = %v, want its deadline", err)
	}
	close(block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// minioTempCredentials asks the test service's STS (MinIO's AssumeRole,
// signed with the static keys) for temporary credentials, so that the
// credential flows below end in requests signed with a session token that
// the service checks. It skips, or fails when s3 is required, without the
// service.
func minioTempCredentials(t *testing.T, cfg Config) credentials {
	t.Helper()
	o, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTransport(o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	form := url.Values{"Action": {"AssumeRole"}, "Version": {stsAPIVersion}, "DurationSeconds": {"900"}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, o.baseURL+"/", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	signRequest(req, credentials{accessKeyID: cfg.Key, secretAccessKey: cfg.KeySecret}, cfg.Region, "sts", sha256Hex([]byte(form)), time.Now())
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		storagetest.Unavailable(t, "s3", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Credentials struct {
			AccessKeyID     string    `xml:"AccessKeyId"`
			SecretAccessKey string    `xml:"SecretAccessKey"`
			SessionToken    string    `xml:"SessionToken"`
			Expiration      time.Time `xml:"Expiration"`
		} `xml:"AssumeRoleResult>Credentials"`
	}
	if resp.StatusCode != http.StatusOK || xml.Unmarshal(body, &out) != nil || out.Credentials.SessionToken == "" {
		t.Fatalf("AssumeRole at the test service: HTTP %d %s", resp.StatusCode, body)
	}
	c := out.Credentials
	return credentials{accessKeyID: c.AccessKeyID, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken, expires: c.Expiration}
}

// fakeIMDS is an instance metadata service handing out c for role "backup".
type fakeIMDS struct {
	c          credentials
	v1Only     bool // refuse IMDSv2 tokens
	noRole     bool
	mu         sync.Mutex
	requests   []string
	ttlHeaders []string
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	const token = "imds-session-token"
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		if f.v1Only {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		f.mu.Lock()
		f.ttlHeaders = append(f.ttlHeaders, r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		f.mu.Unlock()
		_, _ = io.WriteString(w, token)
		return
	}
	if !f.v1Only && r.Header.Get("X-Aws-Ec2-Metadata-Token") != token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case imdsCredPath:
		if f.noRole {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "backup\n")
	case imdsCredPath + "backup":
		_ = json.NewEncoder(w).Encode(map[string]string{
			"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": f.c.accessKeyID, "SecretAccessKey": f.c.secretAccessKey,
			"Token": f.c.sessionToken, "Expiration": f.c.expires.UTC().Format(time.RFC3339), "LastUpdated": time.Now().UTC().Format(time.RFC3339),
		})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeIMDS) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// useStore puts, lists, reads and deletes an object through s.
func useStore(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	if err := s.Put(ctx, "cred/check", strings.NewReader("signed with a session token")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	n := 0
	if err := s.List(ctx, "cred/", func(storage.ObjectInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List = %d objects, %v", n, err)
	}
	b, err := storage.ReadAll(ctx, s, "cred/check")
	if err != nil || string(b) != "signed with a session token" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	if err := s.Delete(ctx, "cred/check"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// TestAutoCredentials runs key type auto against a fake instance metadata
// service that hands out real temporary credentials of the test service:
// IMDSv2 token, role discovery, credentials document, then requests signed
// with the session token; the credentials are fetched once for many
// requests.
func TestAutoCredentials(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	imds := &fakeIMDS{c: minioTempCredentials(t, cfg)}
	srv := httptest.NewServer(imds)
	t.Cleanup(srv.Close)

	auto := cfg
	auto.Key, auto.KeySecret, auto.KeyType, auto.MetadataEndpoint = "", "", KeyTypeAuto, srv.URL
	useStore(t, prefixStore(t, auto))
	want := []string{"PUT /latest/api/token", "GET " + imdsCredPath, "GET " + imdsCredPath + "backup"}
	if got := imds.log(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("metadata requests %v, want %v (once for all requests)", got, want)
	}
	if imds.ttlHeaders[0] != imdsTokenTTL {
		t.Fatalf("IMDSv2 token TTL %q", imds.ttlHeaders[0])
	}

	t.Run("ExplicitRole", func(t *testing.T) {
		t.Parallel()
		f := &fakeIMDS{c: imds.c}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		c := auto
		c.MetadataEndpoint, c.Role = srv.URL, "backup"
		useStore(t, prefixStore(t, c))
		if got := f.log(); len(got) != 2 || got[1] != "GET "+imdsCredPath+"backup" {
			t.Fatalf("metadata requests %v, want no role discovery", got)
		}
	})
	t.Run("IMDSv1", func(t *testing.T) {
		t.Parallel()
		f := &fakeIMDS{c: imds.c, v1Only: true}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		c := auto
		c.MetadataEndpoint = srv.URL
		useStore(t, prefixStore(t, c))
	})
	t.Run("NoRole", func(t *testing.T) {
		t.Parallel()
		f := &fakeIMDS{c: imds.c, noRole: true}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		c := auto
		c.MetadataEndpoint = srv.URL
		_, err := prefixStore(t, c).Stat(t.Context(), "x")
		if !errors.Is(err, storage.ErrPermission) || !strings.Contains(err.Error(), "repo1-s3-key-type=auto") || !strings.Contains(err.Error(), "IAM role") {
			t.Fatalf("Stat without an instance role = %v, want ErrPermission naming the option and the role", err)
		}
	})
	t.Run("NoService", func(t *testing.T) {
		t.Parallel()
		c := auto
		c.MetadataEndpoint = "http://127.0.0.1:1"
		_, err := prefixStore(t, c).Stat(t.Context(), "x")
		if err == nil || storage.Permanent(err) || !strings.Contains(err.Error(), "instance metadata service") {
			t.Fatalf("Stat without a metadata service = %v, want a retryable error naming it", err)
		}
	})
}

// fakeSTS answers AssumeRoleWithWebIdentity with c for the token in its
// token field, and AccessDenied for any other.
type fakeSTS struct {
	c      credentials
	mu     sync.Mutex
	token  string
	calls  atomic.Int32
	errors []string
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	fail := func(format string, args ...any) {
		f.mu.Lock()
		f.errors = append(f.errors, fmt.Sprintf(format, args...))
		f.mu.Unlock()
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		fail("%s %s", r.Method, r.URL)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail("form: %v", err)
		return
	}
	for k, want := range map[string]string{"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": "arn:aws:iam::123456789012:role/backup", "RoleSessionName": "pgsidecar"} {
		if got := r.PostForm.Get(k); got != want {
			fail("%s = %q, want %q", k, got, want)
			return
		}
	}
	f.mu.Lock()
	token := f.token
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if r.PostForm.Get("WebIdentityToken") != token {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
			`<Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>r-1</RequestId></ErrorResponse>`)
		return
	}
	_, _ = fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:db:pgsidecar</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>%s</SessionToken>
      <SecretAccessKey>%s</SecretAccessKey>
      <Expiration>%s</Expiration>
      <AccessKeyId>%s</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`, f.c.sessionToken, f.c.secretAccessKey, f.c.expires.UTC().Format(time.RFC3339), f.c.accessKeyID)
}

// TestWebIdentityCredentials runs key type web-id against a fake STS that
// checks the AssumeRoleWithWebIdentity request (role, session name, token
// read from the token file) and hands out real temporary credentials of
// the test service: one STS call for many concurrent requests, a token
// that STS refuses reported as a permission error without the token.
func TestWebIdentityCredentials(t *testing.T) {
	t.Parallel()
	cfg, _ := testBucket(t)
	sts := &fakeSTS{c: minioTempCredentials(t, cfg), token: "eyJ-first-token"}
	srv := httptest.NewServer(sts)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("eyJ-first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	web := cfg
	web.Key, web.KeySecret, web.KeyType, web.STSEndpoint = "", "", KeyTypeWebID, srv.URL
	web.WebIdentityRoleARN, web.WebIdentityTokenFile = "arn:aws:iam::123456789012:role/backup", tokenFile
	s := prefixStore(t, web)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, storage.ErrNotExist) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Stat with web identity credentials = %v, want ErrNotExist", err)
	}
	useStore(t, s)
	if n := sts.calls.Load(); n != 1 {
		t.Fatalf("%d STS calls, want 1 for all requests", n)
	}
	if len(sts.errors) > 0 {
		t.Fatalf("bad STS requests: %v", sts.errors)
	}

	// A store whose token STS refuses: ErrPermission naming the option and
	// the role, with STS's code, never the token.
	if err := os.WriteFile(tokenFile, []byte("eyJ-stale-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := prefixStore(t, web).Stat(t.Context(), "x")
	if !errors.Is(err, storage.ErrPermission) || !strings.Contains(err.Error(), "repo1-s3-key-type=web-id") ||
		!strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), web.WebIdentityRoleARN) {
		t.Fatalf("Stat with a refused token = %v, want ErrPermission naming the option, role and code", err)
	}
	if strings.Contains(err.Error(), "eyJ-stale-token") {
		t.Fatalf("error leaks the token: %v", err)
	}
	// The rotated token file is read again for new credentials.
	sts.mu.Lock()
	sts.token = "eyJ-stale-token"
	sts.mu.Unlock()
	useStore(t, prefixStore(t, web))

	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	_, err = prefixStore(t, web).Stat(t.Context(), "x")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "AWS_WEB_IDENTITY_TOKEN_FILE") {
		t.Fatalf("Stat without the token file = %v", err)
	}
}

func TestSTSEndpoint(t *testing.T) {
	t.Parallel()
	for region, want := range map[string]string{
		"us-east-1":      "https://sts.us-east-1.amazonaws.com",
		"eu-central-1":   "https://sts.eu-central-1.amazonaws.com",
		"cn-north-1":     "https://sts.cn-north-1.amazonaws.com.cn",
		"us-gov-west-1":  "https://sts.us-gov-west-1.amazonaws.com",
		"ap-southeast-4": "https://sts.ap-southeast-4.amazonaws.com",
	} {
		cfg := validConfig()
		cfg.Region = region
		o, err := validate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if o.stsEndpoint != want {
			t.Errorf("STS endpoint of %s = %s, want %s", region, o.stsEndpoint, want)
		}
	}
	cfg := validConfig()
	cfg.STSEndpoint = "sts.example.com"
	if _, err := validate(cfg); err == nil || !strings.Contains(err.Error(), "STS endpoint") {
		t.Errorf("STS endpoint without scheme: %v", err)
	}
}
