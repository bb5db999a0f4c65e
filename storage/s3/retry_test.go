package s3

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Faults a faultProxy injects.
const (
	faultNone       = iota
	faultSlowDown   // answer 503 SlowDown without forwarding
	faultDrop       // close the connection without forwarding
	faultLoseAnswer // forward, then close the connection instead of answering
)

// faultProxy is a reverse proxy in front of the test service whose decide
// function picks a fault for each request, given the request's kind
// ("put", "create", "part", "complete", "abort", "other") and how many
// requests of that kind came before.
type faultProxy struct {
	mu     sync.Mutex
	seen   map[string]int
	decide func(kind string, n int) int
	log    []string
}

func requestKind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "part"
	case r.Method == http.MethodPut:
		return "put"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "create"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "complete"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "abort"
	}
	return "other"
}

func startFaultProxy(t *testing.T, cfg Config, decide func(kind string, n int) int) (*faultProxy, string) {
	t.Helper()
	p := &faultProxy{seen: map[string]int{}, decide: decide}
	return p, startProxy(t, cfg, func(forward http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			kind := requestKind(r)
			p.mu.Lock()
			n := p.seen[kind]
			p.seen[kind]++
			fault := p.decide(kind, n)
			if fault != faultNone {
				p.log = append(p.log, kind)
			}
			p.mu.Unlock()
			switch fault {
			case faultSlowDown:
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			case faultDrop:
				panic(http.ErrAbortHandler)
			case faultLoseAnswer:
				rec := httptest.NewRecorder()
				forward.ServeHTTP(rec, r)
				panic(http.ErrAbortHandler)
			default:
				forward.ServeHTTP(w, r)
			}
		})
	})
}

func (p *faultProxy) injected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// TestTransientFailuresAreRetried checks that the requests whose body the
// driver holds (PutObject, the parts and the completion of a multipart
// upload), which the retry decorator could not replay from a consumed
// stream, are retried by the driver: a 503 SlowDown, a dropped connection,
// and a completion whose answer was lost (the retry finds the upload gone
// and the object complete) all end with the object stored.
func TestTransientFailuresAreRetried(t *testing.T) {
	t.Parallel()
	cfg, admin := testBucket(t)
	proxy, endpoint := startFaultProxy(t, cfg, func(kind string, n int) int {
		switch {
		case kind == "put" && n == 0, kind == "create" && n == 0:
			return faultSlowDown
		case kind == "part" && n == 1:
			return faultDrop
		case kind == "part" && n == 2:
			return faultSlowDown
		case kind == "complete" && n == 0:
			return faultLoseAnswer
		}
		return faultNone
	})
	pc := cfg
	pc.Endpoint, pc.CAFile, pc.VerifyTLS = endpoint, "", true
	s := prefixStore(t, pc)
	ctx := t.Context()
	// Neither source can be rewound: only the driver's own retries help.
	if err := s.Put(ctx, "small", io.MultiReader(bytes.NewReader([]byte("small")))); err != nil {
		t.Fatalf("Put through a 503: %v", err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*DefaultPartSize+100)/16)
	if err := s.Put(ctx, "big", io.MultiReader(bytes.NewReader(big))); err != nil {
		t.Fatalf("multipart Put through faults: %v", err)
	}
	for k, want := range map[string][]byte{"small": []byte("small"), "big": big} {
		got, err := storage.ReadAll(ctx, s, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after retried writes: %d bytes, %v; want %d bytes", k, len(got), err, len(want))
		}
	}
	if got := proxy.injected(); len(got) != 5 {
		t.Fatalf("faults injected on %v, want put, create, 2 parts and complete", got)
	}
	if left := unfinishedUploads(t, admin, s.prefix); len(left) != 0 {
		t.Fatalf("unfinished uploads left: %v", left)
	}
}

// TestPersistentFailureAbortsUpload checks that a part that keeps failing
// ends the Put after bodyAttempts attempts with a retryable (not
// permanent) error naming the part, and that the upload is aborted.
func TestPersistentFailureAbortsUpload(t *testing.T) {
	t.Parallel()
	cfg, admin := testBucket(t)
	proxy, endpoint := startFaultProxy(t, cfg, func(kind string, _ int) int {
		if kind == "part" {
			return faultSlowDown
		}
		return faultNone
	})
	pc := cfg
	pc.Endpoint, pc.CAFile, pc.VerifyTLS, pc.Concurrency = endpoint, "", true, 1
	s := prefixStore(t, pc)
	err := s.Put(t.Context(), "doomed", bytes.NewReader(make([]byte, DefaultPartSize+1)))
	var re *ResponseError
	if err == nil || storage.Permanent(err) || !errors.As(err, &re) || re.Code != "SlowDown" {
		t.Fatalf("Put with a failing part = %v, want a retryable SlowDown error", err)
	}
	if got := len(proxy.injected()); got < bodyAttempts || got > 2*bodyAttempts {
		t.Fatalf("%d failed part attempts, want %d per part in flight", got, bodyAttempts)
	}
	if left := unfinishedUploads(t, admin, s.prefix); len(left) != 0 {
		t.Fatalf("failed upload not aborted: %v", left)
	}
	if _, err := s.Stat(t.Context(), "doomed"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat after the failed Put = %v, want ErrNotExist", err)
	}
}
