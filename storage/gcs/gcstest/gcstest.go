// Package gcstest manages buckets and objects on the GCS test service
// (fake-gcs-server) for the tests of the gcs driver and the integration
// tests. It talks to the JSON API with net/http, without credentials, and
// is never linked into pgsidecar.
package gcstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// EndpointEnv names the variable that holds the JSON API URL of the test
// service.
const EndpointEnv = "PGSIDECAR_TEST_GCS_ENDPOINT"

// DefaultEndpoint is the test service's JSON API URL when EndpointEnv is
// unset.
const DefaultEndpoint = "http://127.0.0.1:4443/storage/v1/"

// Project is the project buckets are created in; fake-gcs-server accepts
// any.
const Project = "pgsidecar-test"

// Endpoint returns the JSON API URL of the test service, ending in "/".
func Endpoint() string {
	return strings.TrimSuffix(storagetest.Env(EndpointEnv, DefaultEndpoint), "/") + "/"
}

// Service is the test service at a JSON API URL.
type Service struct {
	// Endpoint is the JSON API URL, ending in "/".
	Endpoint string
}

// Require returns the test service, ending the test through
// storagetest.Unavailable when it does not answer.
func Require(t testing.TB) Service {
	t.Helper()
	s := Service{Endpoint: Endpoint()}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.call(ctx, http.MethodGet, "b?project="+Project, nil, nil); err != nil {
		storagetest.Unavailable(t, "gcs", err)
	}
	return s
}

// call sends a JSON request to path below the endpoint and decodes the
// answer into out when it is not nil.
func (s Service) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.Endpoint+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, req.URL, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// NewBucket creates an empty bucket named prefix plus random hex; at
// cleanup its objects and the bucket are removed.
func (s Service) NewBucket(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if err := s.call(t.Context(), http.MethodPost, "b?project="+Project, map[string]string{"name": name}, nil); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		names, err := s.list(ctx, name)
		if err != nil {
			t.Logf("list bucket %s: %v", name, err)
		}
		for _, o := range names {
			_ = s.call(ctx, http.MethodDelete, "b/"+url.PathEscape(name)+"/o/"+url.PathEscape(o), nil, nil)
		}
		if err := s.call(ctx, http.MethodDelete, "b/"+url.PathEscape(name), nil, nil); err != nil {
			t.Errorf("delete bucket %s: %v", name, err)
		}
	})
	return name
}

// list returns the names of every object in bucket, in the service's order.
func (s Service) list(ctx context.Context, bucket string) ([]string, error) {
	var names []string
	q := url.Values{"fields": {"nextPageToken,items(name)"}}
	for {
		var page struct {
			NextPageToken string `json:"nextPageToken"`
			Items         []struct {
				Name string `json:"name"`
			} `json:"items"`
		}
		if err := s.call(ctx, http.MethodGet, "b/"+url.PathEscape(bucket)+"/o?"+q.Encode(), nil, &page); err != nil {
			return names, err
		}
		for _, it := range page.Items {
			names = append(names, it.Name)
		}
		if page.NextPageToken == "" {
			return names, nil
		}
		q.Set("pageToken", page.NextPageToken)
	}
}

// ObjectNames lists every object of bucket.
func (s Service) ObjectNames(t testing.TB, bucket string) []string {
	t.Helper()
	names, err := s.list(t.Context(), bucket)
	if err != nil {
		t.Fatalf("list bucket %s: %v", bucket, err)
	}
	return names
}

// WriteObject stores data as object name of bucket in one media upload.
func (s Service) WriteObject(t testing.TB, bucket, name string, data []byte) {
	t.Helper()
	u := strings.Replace(s.Endpoint, "/storage/v1/", "/upload/storage/v1/", 1) + "b/" + url.PathEscape(bucket) +
		"/o?" + url.Values{"uploadType": {"media"}, "name": {name}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("write %s: %s: %s", name, resp.Status, b)
	}
}
