package gcs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Key types accepted in Config.KeyType.
const (
	// KeyTypeService authenticates with the service-account JSON key file
	// named by Config.Key (pgBackRest's default).
	KeyTypeService = "service"
	// KeyTypeToken sends Config.Key as an OAuth 2.0 bearer access token.
	KeyTypeToken = "token"
	// KeyTypeAuto uses the access token of the GCE/GKE metadata server (the
	// instance's service account, or the workload identity on GKE), as
	// pgBackRest does.
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

// chunkQuantum is the granularity GCS requires of every chunk of a
// resumable upload but the last.
const chunkQuantum = 256 << 10

// maxNameLen is the longest object name GCS accepts, in bytes of UTF-8.
const maxNameLen = 1024

// metadataTokenURL is where KeyTypeAuto gets its access token: the
// metadata server of GCE, and GKE's metadata server under workload identity.
const metadataTokenURL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"

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
	// path gets "/storage/v1/"). Empty means storage.googleapis.com. Uploads
	// go to the same scheme and host, below "/upload" + that path.
	Endpoint string
	// KeyType is repoN-gcs-key-type: "service" (default), "token", "auto" or
	// the pgsidecar extension "none".
	KeyType string
	// Key is repoN-gcs-key: the path of the service-account key file for
	// "service", the access token for "token" (sent as "Bearer <token>"; a
	// key that already starts with "Bearer " is sent as it is), empty
	// otherwise. It is never logged or put in an error message when it is a
	// token.
	Key string
	// VerifyTLS is repoN-storage-verify-tls. Callers must default it to true.
	VerifyTLS bool
	// CAFile is repoN-storage-ca-file: a PEM bundle that replaces the system
	// roots when verifying the server (and the token endpoint).
	CAFile string
	// CAPath is repoN-storage-ca-path: a directory whose PEM files replace
	// the system roots (together with CAFile, when both are set).
	CAPath string
	// ChunkSize is repoN-storage-upload-chunk-size in bytes, between 64 KiB
	// and 1 TiB; zero means DefaultChunkSize. GCS needs a multiple of
	// 256 KiB, so it is rounded up to one. Each upload buffers one chunk.
	ChunkSize int
	// UserProject is billed for requests to a requester-pays bucket; empty
	// for normal buckets.
	UserProject string
}

// hooks are the test seams of newStore.
type hooks struct {
	// wrapTransport, when set, wraps the HTTP transport below the
	// authentication layer (storage and token requests), for fault injection.
	wrapTransport func(http.RoundTripper) http.RoundTripper
	// metadataURL replaces metadataTokenURL.
	metadataURL string
}

// settings is a validated Config.
type settings struct {
	apiBase    string // JSON API URL of the bucket's objects: .../storage/v1/b/BUCKET/o
	uploadBase string // upload URL of the bucket's objects: .../upload/storage/v1/b/BUCKET/o
	root       string // Prefix + "/", or "" for the bucket root
	keyType    string
	chunkSize  int
}

// opt returns the pgBackRest name of option name for this repository.
func (c *Config) opt(name string) string {
	n := c.Repo
	if n <= 0 {
		n = 1
	}
	return fmt.Sprintf("repo%d-%s", n, name)
}

// validate checks cfg and applies its defaults. It does no I/O.
func (c *Config) validate() (settings, error) {
	var s settings
	if c.Bucket == "" {
		return s, fmt.Errorf("%s is required: %w", c.opt("gcs-bucket"), storage.ErrInvalid)
	}
	if !validBucket(c.Bucket) {
		return s, fmt.Errorf("%s %q is not a valid bucket name: %w", c.opt("gcs-bucket"), c.Bucket, storage.ErrInvalid)
	}
	s.root = strings.Trim(c.Prefix, "/")
	if s.root != "" {
		if err := storage.ValidateKey(s.root); err != nil {
			return s, fmt.Errorf("%s: %w", c.opt("path"), err)
		}
		s.root += "/"
	}
	s.chunkSize = c.ChunkSize
	if s.chunkSize == 0 {
		s.chunkSize = DefaultChunkSize
	}
	if s.chunkSize < minChunkSize || int64(s.chunkSize) > maxChunkSize {
		return s, fmt.Errorf("%s %d is outside 64KiB..1TiB: %w", c.opt("storage-upload-chunk-size"), s.chunkSize, storage.ErrInvalid)
	}
	s.chunkSize = (s.chunkSize + chunkQuantum - 1) / chunkQuantum * chunkQuantum
	api, plainHTTP, err := parseEndpoint(c.Endpoint)
	if err != nil {
		return s, fmt.Errorf("%s: %w", c.opt("gcs-endpoint"), err)
	}
	s.keyType = c.KeyType
	if s.keyType == "" {
		s.keyType = KeyTypeService
	}
	switch s.keyType {
	case KeyTypeService, KeyTypeToken:
		if c.Key == "" {
			return s, fmt.Errorf("%s is required when %s is %s: %w", c.opt("gcs-key"), c.opt("gcs-key-type"), s.keyType, storage.ErrInvalid)
		}
	case KeyTypeAuto, KeyTypeNone:
		if c.Key != "" {
			return s, fmt.Errorf("%s is not valid when %s is %s: %w", c.opt("gcs-key"), c.opt("gcs-key-type"), s.keyType, storage.ErrInvalid)
		}
	default:
		return s, fmt.Errorf("%s %q is not one of service, token, auto, none: %w", c.opt("gcs-key-type"), s.keyType, storage.ErrInvalid)
	}
	if plainHTTP && s.keyType != KeyTypeNone {
		return s, fmt.Errorf("%s %s is plain http, which would expose credentials; use https or %s=none: %w",
			c.opt("gcs-endpoint"), c.Endpoint, c.opt("gcs-key-type"), storage.ErrInvalid)
	}
	u, err := url.Parse(api)
	if err != nil { // parseEndpoint produced it
		return s, fmt.Errorf("%s: %w: %w", c.opt("gcs-endpoint"), storage.ErrInvalid, err)
	}
	objects := "b/" + url.PathEscape(c.Bucket) + "/o"
	s.apiBase = api + objects
	s.uploadBase = u.Scheme + "://" + u.Host + "/upload" + u.EscapedPath() + objects
	return s, nil
}

// validBucket is a loose check of GCS bucket naming rules: 3 to 222
// lowercase letters, digits, dashes, underscores and dots, starting and
// ending with a letter or digit.
func validBucket(name string) bool {
	if len(name) < 3 || len(name) > 222 {
		return false
	}
	for i := range len(name) {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(name)-1 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// parseEndpoint turns repoN-gcs-endpoint into the JSON API base URL (ending
// in "/") and reports whether it is plain HTTP.
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
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false, fmt.Errorf("%q must be a bare host[:port] URL with an optional path: %w", ep, storage.ErrInvalid)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/storage/v1/"
	} else if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawPath = ""
	return u.String(), u.Scheme == "http", nil
}

// newTransport returns the HTTP transport of one store with the configured
// TLS trust. It does not ask for compressed responses, so object bytes come
// back as stored.
func newTransport(cfg *Config) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if !cfg.VerifyTLS {
		tc.InsecureSkipVerify = true //nolint:gosec // repoN-storage-verify-tls=n asks for it
	} else if cfg.CAFile != "" || cfg.CAPath != "" {
		pool := x509.NewCertPool()
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: read %s: %w", cfg.opt("storage-ca-file"), cfg.CAFile, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: %s holds no PEM certificate: %w", cfg.opt("storage-ca-file"), cfg.CAFile, storage.ErrInvalid)
			}
		}
		if cfg.CAPath != "" {
			if err := addCADir(pool, cfg.CAPath); err != nil {
				return nil, fmt.Errorf("%s: %w", cfg.opt("storage-ca-path"), err)
			}
		}
		tc.RootCAs = pool
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
	}, nil
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

// newMetadataClient returns the client that asks the metadata server for
// tokens: plain HTTP to a link-local service, never through a proxy.
func newMetadataClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 2,
	}
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}, tr
}

// noRedirect keeps a client from following redirects: the API sends none
// that matter (a resumable upload answers 308 without Location), and a
// followed one could carry credentials elsewhere.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
