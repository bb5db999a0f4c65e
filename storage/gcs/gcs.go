// Package gcs is the storage driver for Google Cloud Storage (repo-type=gcs)
// and for GCS-compatible emulators such as fake-gcs-server.
//
// Objects live in one bucket below an optional name prefix (the repository
// path): the key "archive/db/archive.info" of a store with Prefix
// "var/lib/pgbackrest" is the object "var/lib/pgbackrest/archive/db/archive.info",
// the layout pgBackRest uses.
//
// Uploads stream through the SDK's resumable upload in chunks of
// Config.ChunkSize, so the memory an upload needs is bounded by one chunk and
// an object becomes visible only when its last chunk is committed. An object
// smaller than one chunk goes up in a single request. PutIfAbsent is an upload
// with the precondition ifGenerationMatch=0.
//
// Authentication follows pgBackRest's repo-gcs-key-type: "service" (a
// service-account JSON key file), "token" (a fixed OAuth access token) and
// "auto" (application default credentials, which include the GCE/GKE metadata
// server). The additional type "none" sends no credentials at all; it exists
// for emulators and public buckets. Credentials are never sent over plain
// HTTP: an http:// endpoint is accepted only with key type "none".
package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/httptransport"
	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Key types accepted in Config.KeyType.
const (
	// KeyTypeService authenticates with the service-account JSON key file
	// named by Config.Key (pgBackRest's default).
	KeyTypeService = "service"
	// KeyTypeToken sends Config.Key as an OAuth 2.0 bearer access token.
	KeyTypeToken = "token"
	// KeyTypeAuto uses application default credentials: the file named by
	// GOOGLE_APPLICATION_CREDENTIALS, gcloud's default credentials, or the
	// GCE/GKE metadata server.
	KeyTypeAuto = "auto"
	// KeyTypeNone sends no credentials. It is a pgsidecar extension for
	// emulators (fake-gcs-server) and public buckets, and the only key type
	// allowed with an http:// endpoint.
	KeyTypeNone = "none"
)

// DefaultEndpoint is the default of repoN-gcs-endpoint.
const DefaultEndpoint = "storage.googleapis.com"

// DefaultChunkSize is the resumable upload chunk size used when
// Config.ChunkSize is zero: 4 MiB, as pgBackRest uses for GCS.
const DefaultChunkSize = 4 << 20

// Limits of repoN-storage-upload-chunk-size, as pgBackRest allows them.
const (
	minChunkSize = 64 << 10
	maxChunkSize = 1 << 40
)

// maxNameLen is the longest object name GCS accepts, in bytes of UTF-8.
const maxNameLen = 1024

// putIDKey is the custom metadata entry in which PutIfAbsent records a random
// id, so that a create whose response was lost and whose retry then hit
// "precondition failed" can recognise its own object.
const putIDKey = "pgsidecar-put-id"

// Config configures a GCS store. The zero value is not usable: Bucket is
// required and, since VerifyTLS is false in the zero value, callers must set
// VerifyTLS explicitly (pgBackRest's default is true).
type Config struct {
	// Repo is the repository index N used to name options in error messages
	// (repoN-gcs-bucket); zero means 1.
	Repo int
	// Bucket is the bucket that holds the repository (repoN-gcs-bucket).
	Bucket string
	// Prefix is repoN-path without the leading "/" ("" is the bucket root).
	// Object names are Prefix + "/" + key. Leading and trailing slashes are
	// ignored.
	Prefix string
	// Endpoint is repoN-gcs-endpoint: host[:port] reached over HTTPS, or a
	// full URL such as http://127.0.0.1:4443/storage/v1/ (a URL without a
	// path gets "/storage/v1/"). Empty means storage.googleapis.com.
	Endpoint string
	// KeyType is repoN-gcs-key-type: "service" (default), "token", "auto" or
	// the pgsidecar extension "none".
	KeyType string
	// Key is repoN-gcs-key: the path of the service-account key file for
	// "service", the access token for "token", empty otherwise. It is never
	// logged or put in an error message when it is a token.
	Key string
	// VerifyTLS is repoN-storage-verify-tls. Callers must default it to true.
	VerifyTLS bool
	// CAFile is repoN-storage-ca-file: a PEM bundle that replaces the system
	// roots when verifying the server.
	CAFile string
	// CAPath is repoN-storage-ca-path: a directory whose PEM files replace
	// the system roots (together with CAFile, when both are set).
	CAPath string
	// ChunkSize is repoN-storage-upload-chunk-size in bytes, between 64 KiB
	// and 1 TiB; zero means DefaultChunkSize. GCS needs a multiple of
	// 256 KiB, so the SDK rounds it up to one. Each upload buffers one chunk.
	ChunkSize int
	// UserProject is billed for requests to a requester-pays bucket; empty
	// for normal buckets.
	UserProject string
}

// Store is a storage.Store in a Google Cloud Storage bucket.
type Store struct {
	client    *gstorage.Client
	transport *http.Transport
	bucket    *gstorage.BucketHandle
	root      string // Prefix + "/", or "" for the bucket root
	chunkSize int
}

var _ storage.Store = (*Store)(nil)

// bucketName is a loose check of GCS bucket naming rules: lowercase letters,
// digits, dashes, underscores and dots, starting and ending with a letter or
// digit.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// sdkAttempts bounds the SDK's own attempts at a request other than an
// upload, so that a lasting failure comes back with the service's error for
// the caller's retry policy to judge. Uploads keep the SDK's retries (each
// chunk for up to 32 s): the caller cannot replay their stream.
const sdkAttempts = 3

// New validates cfg and returns a store. It does not contact the service:
// credentials are fetched and the bucket is reached on first use.
func New(ctx context.Context, cfg Config) (*Store, error) {
	return newStore(ctx, cfg, nil)
}

// newStore is New with an optional wrapper around the HTTP transport, below
// the authentication layer; tests use it to inject network faults.
func newStore(ctx context.Context, cfg Config, wrapTransport func(http.RoundTripper) http.RoundTripper) (*Store, error) {
	repo := cfg.Repo
	if repo == 0 {
		repo = 1
	}
	opt := func(name string) string { return fmt.Sprintf("repo%d-%s", repo, name) }

	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%s is required: %w", opt("gcs-bucket"), storage.ErrInvalid)
	}
	if !bucketName.MatchString(cfg.Bucket) {
		return nil, fmt.Errorf("%s %q is not a valid bucket name: %w", opt("gcs-bucket"), cfg.Bucket, storage.ErrInvalid)
	}
	root := strings.Trim(cfg.Prefix, "/")
	if root != "" {
		if err := storage.ValidateKey(root); err != nil {
			return nil, fmt.Errorf("%s: %w", opt("path"), err)
		}
		root += "/"
	}
	chunkSize := cfg.ChunkSize
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < minChunkSize || int64(chunkSize) > maxChunkSize {
		return nil, fmt.Errorf("%s %d is outside 64KiB..1TiB: %w", opt("storage-upload-chunk-size"), chunkSize, storage.ErrInvalid)
	}
	endpoint, plainHTTP, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opt("gcs-endpoint"), err)
	}
	keyType := cfg.KeyType
	if keyType == "" {
		keyType = KeyTypeService
	}
	switch keyType {
	case KeyTypeService, KeyTypeToken:
		if cfg.Key == "" {
			return nil, fmt.Errorf("%s is required when %s is %s: %w", opt("gcs-key"), opt("gcs-key-type"), keyType, storage.ErrInvalid)
		}
	case KeyTypeAuto, KeyTypeNone:
		if cfg.Key != "" {
			return nil, fmt.Errorf("%s is not valid when %s is %s: %w", opt("gcs-key"), opt("gcs-key-type"), keyType, storage.ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("%s %q is not one of service, token, auto, none: %w", opt("gcs-key-type"), keyType, storage.ErrInvalid)
	}
	if plainHTTP && keyType != KeyTypeNone {
		return nil, fmt.Errorf("%s %s is plain http, which would expose credentials; use https or %s=none: %w",
			opt("gcs-endpoint"), cfg.Endpoint, opt("gcs-key-type"), storage.ErrInvalid)
	}

	base, err := baseTransport(cfg, opt)
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = base
	if wrapTransport != nil {
		rt = wrapTransport(rt)
	}
	hc := &http.Client{Transport: rt}
	if keyType != KeyTypeNone {
		creds, err := newCredentials(keyType, cfg.Key, &http.Client{Transport: rt}, opt)
		if err != nil {
			return nil, err
		}
		if err := httptransport.AddAuthorizationMiddleware(hc, creds); err != nil {
			return nil, fmt.Errorf("set up authentication: %w", err)
		}
	}

	// The HTTP client carries TLS settings and credentials; WithoutAuthentication
	// keeps the SDK from looking for default credentials of its own. Reads use
	// the JSON API, as pgBackRest does, so that every request goes below the
	// endpoint's URL; the SDK's default XML reads would go to
	// scheme://host/bucket/object, dropping any path of the endpoint (and
	// fake-gcs-server serves them only when its -public-host matches).
	client, err := gstorage.NewClient(ctx,
		option.WithHTTPClient(hc),
		option.WithoutAuthentication(),
		option.WithEndpoint(endpoint),
		gstorage.WithJSONReads(),
	)
	if err != nil {
		return nil, fmt.Errorf("create gcs client: %w", err)
	}
	bucket := client.Bucket(cfg.Bucket)
	if cfg.UserProject != "" {
		bucket = bucket.UserProject(cfg.UserProject)
	}
	return &Store{client: client, transport: base, bucket: bucket, root: root, chunkSize: chunkSize}, nil
}

// parseEndpoint turns repoN-gcs-endpoint into the JSON API base URL and
// reports whether it is plain HTTP.
func parseEndpoint(ep string) (string, bool, error) {
	if ep == "" {
		ep = DefaultEndpoint
	}
	if !strings.Contains(ep, "://") {
		if strings.ContainsAny(ep, "/?#@ ") {
			return "", false, fmt.Errorf("%q is neither host[:port] nor a URL: %w", ep, storage.ErrInvalid)
		}
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("parse %q: %w: %w", ep, storage.ErrInvalid, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", false, fmt.Errorf("%q: scheme must be https or http: %w", ep, storage.ErrInvalid)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%q must be a bare host[:port] URL with an optional path: %w", ep, storage.ErrInvalid)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/storage/v1/"
	} else if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), u.Scheme == "http", nil
}

// baseTransport returns an HTTP transport with the configured TLS trust.
func baseTransport(cfg Config, opt func(string) string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if !cfg.VerifyTLS {
		tc.InsecureSkipVerify = true //nolint:gosec // repoN-storage-verify-tls=n asks for it
	} else if cfg.CAFile != "" || cfg.CAPath != "" {
		pool := x509.NewCertPool()
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: read %s: %w", opt("storage-ca-file"), cfg.CAFile, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: %s holds no PEM certificate: %w", opt("storage-ca-file"), cfg.CAFile, storage.ErrInvalid)
			}
		}
		if cfg.CAPath != "" {
			if err := addCADir(pool, cfg.CAPath); err != nil {
				return nil, fmt.Errorf("%s: %w", opt("storage-ca-path"), err)
			}
		}
		tc.RootCAs = pool
	}
	t.TLSClientConfig = tc
	return t, nil
}

// addCADir adds the certificates of every PEM file in dir to pool, as
// OpenSSL's CApath does for its hashed links.
func addCADir(pool *x509.CertPool, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	found := false
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		pem, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // unreadable or dangling entries are not certificates
		}
		if pool.AppendCertsFromPEM(pem) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s holds no PEM certificate: %w", dir, storage.ErrInvalid)
	}
	return nil
}

// newCredentials builds the credentials of keyType. tokenClient carries the
// TLS settings to the token endpoint too.
func newCredentials(keyType, key string, tokenClient *http.Client, opt func(string) string) (*auth.Credentials, error) {
	scopes := []string{gstorage.ScopeFullControl}
	switch keyType {
	case KeyTypeService:
		b, err := os.ReadFile(key)
		if err != nil {
			return nil, fmt.Errorf("%s: service key file %s is not readable: %w", opt("gcs-key"), key, err)
		}
		creds, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, b, &credentials.DetectOptions{
			Scopes: scopes,
			Client: tokenClient,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: service key file %s is not a usable service account key: %w", opt("gcs-key"), key, err)
		}
		return creds, nil
	case KeyTypeToken:
		return auth.NewCredentials(&auth.CredentialsOptions{TokenProvider: staticToken(key)}), nil
	default: // KeyTypeAuto
		creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: scopes, Client: tokenClient})
		if err != nil {
			return nil, fmt.Errorf("%s=auto: find application default credentials: %w", opt("gcs-key-type"), err)
		}
		return creds, nil
	}
}

// staticToken is a fixed bearer token (repoN-gcs-key-type=token).
type staticToken string

func (t staticToken) Token(context.Context) (*auth.Token, error) {
	return &auth.Token{Value: string(t), Type: "Bearer"}, nil
}

// translate adds the storage sentinel that matches err, keeping err in the
// chain. It never inspects message text.
func translate(err error) error {
	var sentinel error
	var gerr *googleapi.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gstorage.ErrObjectNotExist), errors.Is(err, gstorage.ErrBucketNotExist):
		sentinel = storage.ErrNotExist
	case errors.As(err, &gerr):
		switch gerr.Code {
		case http.StatusNotFound:
			sentinel = storage.ErrNotExist
		case http.StatusUnauthorized, http.StatusForbidden:
			sentinel = storage.ErrPermission
		case http.StatusPreconditionFailed:
			// The only precondition the driver sends is ifGenerationMatch=0.
			sentinel = storage.ErrExist
		}
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// isCode reports whether err carries the HTTP status code.
func isCode(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}

// name maps key to its object name.
func (s *Store) name(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	n := s.root + key
	if !utf8.ValidString(n) || len(n) > maxNameLen {
		return "", fmt.Errorf("key %q: object names are at most %d bytes of UTF-8: %w", key, maxNameLen, storage.ErrInvalid)
	}
	return n, nil
}

// object returns the handle of the object name for a request that is not an
// upload, with the SDK's attempts bounded. Every handle gets its own retry
// configuration: the SDK merges Retryer options into a shared one otherwise.
func (s *Store) object(name string, policy gstorage.RetryPolicy) *gstorage.ObjectHandle {
	return s.bucket.Object(name).Retryer(gstorage.WithPolicy(policy), gstorage.WithMaxAttempts(sdkAttempts))
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	// An unconditional upload is not idempotent for the SDK, but for a
	// repository it is: repeating it writes the same bytes. Retrying chunks
	// inside the SDK matters because the caller cannot replay r.
	obj := s.bucket.Object(name).Retryer(gstorage.WithPolicy(gstorage.RetryAlways))
	if err := s.upload(ctx, obj, r, nil); err != nil {
		return fmt.Errorf("put %s: %w", key, translate(err))
	}
	return nil
}

// PutIfAbsent implements storage.Store with ifGenerationMatch=0. Each call
// tags its object with a random id; when the create fails with "precondition
// failed" and the existing object carries the call's own id (an earlier
// attempt succeeded but its response was lost and the SDK retried), the
// call succeeded.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	// The precondition makes the upload idempotent for the SDK, which
	// retries it.
	obj := s.bucket.Object(name).If(gstorage.Conditions{DoesNotExist: true})
	err = s.upload(ctx, obj, r, map[string]string{putIDKey: id})
	if err != nil && isCode(err, http.StatusPreconditionFailed) {
		if attrs, aerr := s.object(name, gstorage.RetryIdempotent).Attrs(ctx); aerr == nil && attrs.Metadata[putIDKey] == id {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, translate(err))
	}
	return nil
}

// upload streams r to obj. On any failure the upload's context is cancelled
// before the writer is closed, so the SDK never commits partial content.
func (s *Store) upload(ctx context.Context, obj *gstorage.ObjectHandle, r io.Reader, metadata map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(wctx)
	w.ChunkSize = s.chunkSize
	w.ContentType = "application/octet-stream"
	w.Metadata = metadata
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	return w.Close()
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	if rng.Offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d: %w", key, rng.Offset, storage.ErrInvalid)
	}
	length := int64(-1)
	if rng.Length > 0 {
		length = rng.Length
	}
	obj := s.object(name, gstorage.RetryIdempotent)
	rd, err := obj.NewRangeReader(ctx, rng.Offset, length)
	if err == nil {
		return rd, nil
	}
	if isCode(err, http.StatusRequestedRangeNotSatisfiable) {
		// The range starts at or past the end: no bytes, if the object exists.
		if _, serr := obj.Attrs(ctx); serr != nil {
			return nil, fmt.Errorf("get %s: %w", key, translate(serr))
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	return nil, fmt.Errorf("get %s: %w", key, translate(err))
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	attrs, err := s.object(name, gstorage.RetryIdempotent).Attrs(ctx)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	return storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: modTime(attrs)}, nil
}

// modTime is the object's last update, or its creation when the service
// reports no update time.
func modTime(attrs *gstorage.ObjectAttrs) time.Time {
	if !attrs.Updated.IsZero() {
		return attrs.Updated
	}
	return attrs.Created
}

// List implements storage.Store. GCS lists names in ascending byte order.
// Names below the prefix that are not valid keys (such as the "folder/"
// placeholders the console creates) are skipped: no key could address them.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	q := &gstorage.Query{Prefix: s.root + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Created"}); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	it := s.bucket.Retryer(gstorage.WithMaxAttempts(sdkAttempts)).Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, translate(err))
		}
		key, ok := strings.CutPrefix(attrs.Name, s.root)
		if !ok || storage.ValidateKey(key) != nil {
			continue
		}
		if err := fn(storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: modTime(attrs)}); err != nil {
			return err
		}
	}
}

// Delete implements storage.Store. A missing object is not an error, so the
// delete is retried by the SDK even without a generation precondition.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	err = s.object(name, gstorage.RetryAlways).Delete(ctx)
	if err != nil && !errors.Is(err, gstorage.ErrObjectNotExist) {
		return fmt.Errorf("delete %s: %w", key, translate(err))
	}
	return nil
}

// Close implements storage.Store.
func (s *Store) Close() error {
	err := s.client.Close()
	s.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close gcs client: %w", err)
	}
	return nil
}
