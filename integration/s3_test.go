package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/s3"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// s3Service is the S3 test service (MinIO over HTTPS by default), from the
// PGSIDECAR_TEST_S3_* variables of the test services contract.
type s3Service struct {
	// Host and Port split PGSIDECAR_TEST_S3_ENDPOINT (pgbackrest takes them
	// as repo1-s3-endpoint and repo1-storage-port).
	Host string
	Port string
	// Region, Key and Secret are the region and static credentials.
	Region, Key, Secret string
	// CAFile is the CA certificate the Go client trusts; empty means TLS
	// verification off.
	CAFile string
}

// repoOptions returns the pgBackRest options (key=value) that make
// repository n a bucket of this service, repoN-path aside. TLS is not
// verified: MinIO's certificate is self-signed and its CA file is in root's
// home, which the unprivileged user running the tools cannot read.
func (s s3Service) repoOptions(n int, bucket string) []string {
	r := fmt.Sprintf("repo%d-", n)
	return []string{
		r + "type=s3",
		r + "s3-bucket=" + bucket,
		r + "s3-endpoint=" + s.Host,
		r + "storage-port=" + s.Port,
		r + "s3-region=" + s.Region,
		r + "s3-key=" + s.Key,
		r + "s3-key-secret=" + s.Secret,
		r + "s3-uri-style=path",
		r + "storage-verify-tls=n",
	}
}

// s3ServiceFromEnv reads the S3 test service's settings.
func s3ServiceFromEnv(t testing.TB) s3Service {
	t.Helper()
	endpoint := storagetest.Env("PGSIDECAR_TEST_S3_ENDPOINT", "127.0.0.1:9000")
	endpoint = strings.TrimPrefix(strings.TrimPrefix(endpoint, "https://"), "http://")
	endpoint = strings.TrimSuffix(endpoint, "/")
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		host, port = endpoint, "443"
	}
	defCA := ""
	cache := storagetest.Env("PGSIDECAR_CACHE", "")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "pgsidecar")
		}
	}
	if cache != "" {
		if p := filepath.Join(cache, "run", "minio", "certs", "public.crt"); fileExists(p) {
			defCA = p
		}
	}
	return s3Service{
		Host:   host,
		Port:   port,
		Region: storagetest.Env("PGSIDECAR_TEST_S3_REGION", "us-east-1"),
		Key:    storagetest.Env("PGSIDECAR_TEST_S3_KEY", "pgsidecar"),
		Secret: storagetest.Env("PGSIDECAR_TEST_S3_SECRET", "pgsidecar-secret"),
		CAFile: storagetest.Env("PGSIDECAR_TEST_S3_CA_FILE", defCA),
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// s3Client opens the driver on buckets of the service: path style,
// static credentials, TLS verified against CAFile or not verified without
// one.
type s3Client struct{ svc s3Service }

// client returns the service's client.
func (s s3Service) client(testing.TB) s3Client { return s3Client{svc: s} }

// bucket returns a store at the root of bucket, closed at cleanup.
func (c s3Client) bucket(t testing.TB, bucket string) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), c.config(bucket))
	if err != nil {
		t.Fatalf("open s3://%s: %v", bucket, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func (c s3Client) config(bucket string) s3.Config {
	return s3.Config{
		Bucket: bucket, Endpoint: net.JoinHostPort(c.svc.Host, c.svc.Port), Region: c.svc.Region,
		Key: c.svc.Key, KeySecret: c.svc.Secret, URIStyle: s3.URIStylePath,
		VerifyTLS: c.svc.CAFile != "", CAFile: c.svc.CAFile,
	}
}

// newS3Bucket creates a uniquely named bucket on the S3 test service and
// returns the service and the bucket's name. At cleanup every object and
// unfinished upload in it is deleted and the bucket removed. An unreachable
// service skips the test, or fails it when PGSIDECAR_TEST_REQUIRE lists s3.
func newS3Bucket(t testing.TB) (s3Service, string) {
	t.Helper()
	svc := s3ServiceFromEnv(t)
	bucket := "pgsidecar-it-" + randomHex(t, 6)
	st, err := s3.New(t.Context(), svc.client(t).config(bucket))
	if err != nil {
		t.Fatalf("open s3://%s: %v", bucket, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := st.CreateBucket(ctx); err != nil {
		var respErr *s3.ResponseError
		if !errors.As(err, &respErr) {
			storagetest.Unavailable(t, "s3", err)
		}
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	t.Cleanup(func() {
		defer st.Close()
		if err := removeS3Bucket(st); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return svc, bucket
}

// removeS3Bucket empties and deletes the bucket of st (a store at its root).
func removeS3Bucket(st *s3.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	uploads, err := st.Uploads(ctx, "")
	if err != nil {
		return err
	}
	for _, u := range uploads {
		if err := st.AbortUpload(ctx, u); err != nil {
			return err
		}
	}
	if err := st.List(ctx, "", func(oi storage.ObjectInfo) error { return st.Delete(ctx, oi.Key) }); err != nil {
		return fmt.Errorf("empty the bucket: %w", err)
	}
	return st.DeleteBucket(ctx)
}

// getS3Object returns an object's content.
func getS3Object(t testing.TB, client s3Client, bucket, key string) []byte {
	t.Helper()
	b, err := storage.ReadAll(t.Context(), client.bucket(t, bucket), key)
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	return b
}

// listS3 returns the keys under prefix in bucket.
func listS3(t testing.TB, client s3Client, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	err := client.bucket(t, bucket).List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("list s3://%s/%s: %v", bucket, prefix, err)
	}
	return keys
}
