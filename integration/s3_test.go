package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awstypes "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

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

// client returns an AWS SDK client for the service: path style, static
// credentials, TLS verified against CAFile or not verified without one.
func (s s3Service) client(t testing.TB) *awss3.Client {
	t.Helper()
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			t.Fatalf("read S3 CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("S3 CA file %s: no certificate", s.CAFile)
		}
		tlsConf.RootCAs = pool
	} else {
		tlsConf.InsecureSkipVerify = true // self-signed test service without a CA file
	}
	httpClient := awshttp.NewBuildableClient().
		WithTimeout(time.Minute).
		WithTransportOptions(func(tr *http.Transport) { tr.TLSClientConfig = tlsConf })
	return awss3.New(awss3.Options{
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.Key, s.Secret, ""),
		BaseEndpoint: aws.String("https://" + net.JoinHostPort(s.Host, s.Port)),
		UsePathStyle: true,
		HTTPClient:   httpClient,
	})
}

// newS3Bucket creates a uniquely named bucket on the S3 test service and
// returns the service and the bucket's name. At cleanup every object and
// unfinished upload in it is deleted and the bucket removed. An unreachable
// service skips the test, or fails it when PGSIDECAR_TEST_REQUIRE lists s3.
func newS3Bucket(t testing.TB) (s3Service, string) {
	t.Helper()
	svc := s3ServiceFromEnv(t)
	client := svc.client(t)
	bucket := "pgsidecar-it-" + randomHex(t, 6)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := client.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) {
			storagetest.Unavailable(t, "s3", err)
		}
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	t.Cleanup(func() {
		if err := removeS3Bucket(client, bucket); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return svc, bucket
}

// removeS3Bucket empties and deletes a bucket.
func removeS3Bucket(client *awss3.Client, bucket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	uploads, err := client.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("list uploads of bucket %s: %w", bucket, err)
	}
	for _, u := range uploads.Uploads {
		if _, err := client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
			Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId,
		}); err != nil {
			return fmt.Errorf("abort upload %s: %w", aws.ToString(u.Key), err)
		}
	}
	p := awss3.NewListObjectsV2Paginator(client, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list bucket %s: %w", bucket, err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]awstypes.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, awstypes.ObjectIdentifier{Key: o.Key})
		}
		out, err := client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{
			Bucket: aws.String(bucket), Delete: &awstypes.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete objects of bucket %s: %w", bucket, err)
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("delete %s: %s", aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
	}
	if _, err := client.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("delete bucket %s: %w", bucket, err)
	}
	return nil
}

// getS3Object returns an object's content.
func getS3Object(t testing.TB, client *awss3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := client.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read s3://%s/%s: %v", bucket, key, err)
	}
	return b
}
