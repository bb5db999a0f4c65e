package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Limits and defaults of the multipart upload.
const (
	// DefaultPartSize is pgBackRest's default repo-storage-upload-chunk-size
	// for S3.
	DefaultPartSize = 5 << 20
	// MinPartSize is the smallest part S3 accepts (except for the last one).
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 << 30
	// MaxParts is the largest number of parts of a multipart upload.
	MaxParts = 10000
	// DefaultConcurrency is the default number of parts in flight per upload.
	DefaultConcurrency = 4
)

// Values of Config.URIStyle.
const (
	URIStyleHost = "host"
	URIStylePath = "path"
)

// Values of Config.KeyType.
const (
	KeyTypeShared = "shared"
	KeyTypeAuto   = "auto"
	KeyTypeWebID  = "web-id"
)

// Config configures an S3 store. Field comments name the pgBackRest option
// each field comes from; Repo is the N in those names.
type Config struct {
	// Repo is the repository number N used in error messages ("repoN-s3-bucket");
	// 0 means 1.
	Repo int

	// Bucket is repoN-s3-bucket.
	Bucket string
	// Endpoint is repoN-s3-endpoint: host[:port] as pgBackRest takes it
	// ("s3.us-east-2.amazonaws.com", "127.0.0.1:9000"), always spoken to
	// with TLS. As an extension an explicit "https://host[:port]" or
	// "http://host[:port]" URL is accepted; http disables TLS.
	Endpoint string
	// Region is repoN-s3-region, used to sign requests.
	Region string
	// Prefix is the key prefix, repoN-path without its leading "/"; "" is the
	// bucket root. A key k is stored as Prefix + "/" + k.
	Prefix string
	// URIStyle is repoN-s3-uri-style: "host" (the default, bucket in the host
	// name) or "path" (bucket in the path, common for S3-compatible stores).
	URIStyle string

	// KeyType is repoN-s3-key-type: "shared" (the default: Key, KeySecret and
	// Token), "auto" (the temporary credentials of the EC2 instance's IAM
	// role, from the instance metadata service, IMDSv2 when available) or
	// "web-id" (AssumeRoleWithWebIdentity at the regional STS endpoint with
	// WebIdentityRoleARN and WebIdentityTokenFile). Temporary credentials
	// are cached and renewed 5 minutes before they expire.
	KeyType string
	// Key, KeySecret and Token are repoN-s3-key, repoN-s3-key-secret and
	// repoN-s3-token (optional). They are secrets: never logged or printed.
	Key, KeySecret, Token string
	// WebIdentityRoleARN and WebIdentityTokenFile are the role to assume and
	// the file holding the web identity token for KeyType "web-id". The
	// caller fills them from AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, as
	// pgBackRest does; this package never reads the environment for them.
	WebIdentityRoleARN, WebIdentityTokenFile string
	// Role is repoN-s3-role: the instance's IAM role for KeyType "auto"; ""
	// asks the instance metadata service for it.
	Role string
	// MetadataEndpoint is the URL of the instance metadata service for
	// KeyType "auto"; "" means DefaultMetadataEndpoint.
	MetadataEndpoint string
	// STSEndpoint is the URL of the STS service for KeyType "web-id"; ""
	// means the regional endpoint, https://sts.<Region>.amazonaws.com.
	STSEndpoint string

	// Host is repoN-storage-host: when set, connections go to this host
	// (host or host:port) instead of the endpoint, and its TLS certificate is
	// verified against this name, while requests still name the endpoint.
	Host string
	// Port is repoN-storage-port: the port connections use, to Host when
	// set, else to the endpoint. 0 means not set: the port given in Host or
	// the endpoint, else 443 (80 for an http endpoint). Pass 0 unless the
	// option was set explicitly, since as in pgBackRest an explicit value
	// overrides a port written in the host or endpoint.
	Port int
	// VerifyTLS is repoN-storage-verify-tls; the caller defaults it to true.
	VerifyTLS bool
	// CAFile and CAPath are repoN-storage-ca-file and repoN-storage-ca-path:
	// a PEM bundle and a directory of PEM files whose certificates are
	// trusted in addition to the system's.
	CAFile, CAPath string

	// PartSize is repoN-storage-upload-chunk-size, the size of one part of a
	// multipart upload: 0 means DefaultPartSize; at least MinPartSize.
	PartSize int64
	// Concurrency is the number of parts of one upload in flight at once; 0
	// means DefaultConcurrency. One Put holds at most PartSize*Concurrency
	// bytes in memory.
	Concurrency int
	// KMSKeyID is repoN-s3-kms-key-id: when set objects are written with
	// SSE-KMS under this key.
	KMSKeyID string
}

const redacted = "<redacted>"

// String formats the configuration with its secrets redacted, so that a
// Config that ends up in a log or an error message does not leak them.
func (c Config) String() string {
	c.redact()
	type plain Config // no methods, so no recursion
	return fmt.Sprintf("%+v", plain(c))
}

// GoString is String for the %#v verb.
func (c Config) GoString() string { return "s3.Config" + c.String() }

func (c *Config) redact() {
	for _, s := range []*string{&c.Key, &c.KeySecret, &c.Token} {
		if *s != "" {
			*s = redacted
		}
	}
}

// optionError is one configuration problem; it matches storage.ErrInvalid.
type optionError struct{ msg string }

func (e *optionError) Error() string        { return e.msg }
func (e *optionError) Is(target error) bool { return target == storage.ErrInvalid }

// options holds a validated configuration with defaults applied.
type options struct {
	Config
	prefix      string // without leading or trailing slashes
	pathStyle   bool
	baseURL     string // scheme://host[:port] request URLs are built from
	dialAddr    string // host:port connections go to instead, or ""
	tlsName     string // name the certificate is verified against when dialAddr is set
	insecureTLS bool

	metadataEndpoint string           // instance metadata service (KeyType auto)
	stsEndpoint      string           // STS (KeyType web-id)
	now              func() time.Time // the clock credentials expire by
}

// opt returns the pgBackRest name of option name for this repository.
func (c *Config) opt(name string) string {
	n := c.Repo
	if n <= 0 {
		n = 1
	}
	return fmt.Sprintf("repo%d-%s", n, name)
}

// validate checks cfg and applies defaults. Every problem is reported, each
// naming the pgBackRest option at fault; the result matches storage.ErrInvalid.
func validate(cfg Config) (*options, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, &optionError{msg: fmt.Sprintf(format, args...)})
	}
	o := &options{Config: cfg}

	if cfg.Bucket == "" {
		bad("%s is required", cfg.opt("s3-bucket"))
	} else if strings.ContainsAny(cfg.Bucket, "/\\ ") {
		bad("%s %q is not a valid bucket name", cfg.opt("s3-bucket"), cfg.Bucket)
	}
	if cfg.Region == "" {
		bad("%s is required", cfg.opt("s3-region"))
	}

	var ep hostPort
	if cfg.Endpoint == "" {
		bad("%s is required", cfg.opt("s3-endpoint"))
	} else {
		var err error
		if ep, err = parseHostPort(cfg.Endpoint); err != nil {
			bad("%s %q: %v", cfg.opt("s3-endpoint"), cfg.Endpoint, err)
		}
	}
	if cfg.Host != "" {
		host, err := parseHostPort(cfg.Host)
		switch {
		case err != nil:
			bad("%s %q: %v", cfg.opt("storage-host"), cfg.Host, err)
		case host.explicitScheme && ep.scheme != "" && host.scheme != ep.scheme:
			bad("%s %q uses %s but %s uses %s", cfg.opt("storage-host"), cfg.Host, host.scheme, cfg.opt("s3-endpoint"), ep.scheme)
		default:
			port := host.port
			if cfg.Port != 0 {
				port = strconv.Itoa(cfg.Port)
			}
			if port == "" {
				port = defaultPort(ep.scheme)
			}
			o.dialAddr = net.JoinHostPort(host.host, port)
			o.tlsName = host.host
		}
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		bad("%s %d is out of range [1, 65535]", cfg.opt("storage-port"), cfg.Port)
	}
	if ep.host != "" {
		if o.dialAddr != "" {
			// As pgBackRest: requests name the endpoint without its port
			// while the connection goes to the storage host.
			o.baseURL = ep.scheme + "://" + hostForURL(ep.host, "")
		} else {
			// As pgBackRest: an explicit port overrides the endpoint's.
			port := ep.port
			if cfg.Port != 0 {
				port = strconv.Itoa(cfg.Port)
			}
			o.baseURL = ep.scheme + "://" + hostForURL(ep.host, port)
		}
	}

	o.prefix = strings.Trim(cfg.Prefix, "/")
	if o.prefix != "" {
		if err := storage.ValidateKey(o.prefix); err != nil {
			bad("%s %q is not a clean path", cfg.opt("path"), cfg.Prefix)
		}
	}

	switch cfg.URIStyle {
	case "", URIStyleHost:
		o.URIStyle = URIStyleHost
	case URIStylePath:
		o.URIStyle = URIStylePath
		o.pathStyle = true
	default:
		bad("%s %q must be %q or %q", cfg.opt("s3-uri-style"), cfg.URIStyle, URIStyleHost, URIStylePath)
	}

	switch cfg.KeyType {
	case "", KeyTypeShared:
		o.KeyType = KeyTypeShared
		if cfg.Key == "" || cfg.KeySecret == "" {
			bad("%s and %s are required when %s is %s", cfg.opt("s3-key"), cfg.opt("s3-key-secret"), cfg.opt("s3-key-type"), KeyTypeShared)
		}
	case KeyTypeAuto, KeyTypeWebID:
		if cfg.Key != "" || cfg.KeySecret != "" || cfg.Token != "" {
			bad("%s, %s and %s are only valid when %s is %s", cfg.opt("s3-key"), cfg.opt("s3-key-secret"), cfg.opt("s3-token"), cfg.opt("s3-key-type"), KeyTypeShared)
		}
		if cfg.KeyType == KeyTypeWebID && (cfg.WebIdentityRoleARN == "" || cfg.WebIdentityTokenFile == "") {
			bad("%s is %s but AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set", cfg.opt("s3-key-type"), KeyTypeWebID)
		}
	default:
		bad("%s %q must be %q, %q or %q", cfg.opt("s3-key-type"), cfg.KeyType, KeyTypeShared, KeyTypeAuto, KeyTypeWebID)
	}

	switch {
	case cfg.PartSize == 0:
		o.PartSize = DefaultPartSize
	case cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize:
		bad("%s %d must be between 5MiB and 5GiB for s3", cfg.opt("storage-upload-chunk-size"), cfg.PartSize)
	}
	switch {
	case cfg.Concurrency == 0:
		o.Concurrency = DefaultConcurrency
	case cfg.Concurrency < 0:
		bad("s3 upload concurrency %d must be positive", cfg.Concurrency)
	}

	o.metadataEndpoint = cfg.MetadataEndpoint
	if o.metadataEndpoint == "" {
		o.metadataEndpoint = DefaultMetadataEndpoint
	}
	o.stsEndpoint = cfg.STSEndpoint
	if o.stsEndpoint == "" && cfg.Region != "" {
		o.stsEndpoint = stsEndpointFor(cfg.Region)
	}
	for _, ep := range []struct{ name, url string }{{"metadata endpoint", o.metadataEndpoint}, {"STS endpoint", o.stsEndpoint}} {
		if ep.url == "" {
			continue
		}
		if u, err := url.Parse(ep.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("s3 %s %q is not an http(s) URL", ep.name, ep.url)
		}
	}
	o.now = time.Now

	o.insecureTLS = !cfg.VerifyTLS
	if len(problems) > 0 {
		return nil, fmt.Errorf("s3 repository configuration: %w", errors.Join(problems...))
	}
	return o, nil
}

// hostPort is a parsed endpoint or storage host.
type hostPort struct {
	scheme         string // "https" or "http"
	explicitScheme bool
	host           string // name or IP, without brackets
	port           string // "" when not given
}

// parseHostPort parses "host", "host:port", "[v6]:port" or an http(s) URL
// without path.
func parseHostPort(s string) (hostPort, error) {
	hp := hostPort{scheme: "https"}
	raw := s
	if i := strings.Index(s, "://"); i >= 0 {
		hp.explicitScheme = true
	} else {
		raw = "https://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return hostPort{}, errors.New("not a host[:port] or http(s) URL")
	}
	switch u.Scheme {
	case "https", "http":
		hp.scheme = u.Scheme
	default:
		return hostPort{}, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return hostPort{}, errors.New("must be a host[:port] without user, path or query")
	}
	hp.host, hp.port = u.Hostname(), u.Port()
	if hp.host == "" {
		return hostPort{}, errors.New("has no host")
	}
	if hp.port != "" {
		if n, err := strconv.Atoi(hp.port); err != nil || n < 1 || n > 65535 {
			return hostPort{}, fmt.Errorf("port %q is out of range [1, 65535]", hp.port)
		}
	}
	return hp, nil
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// hostForURL joins host and an optional port for a URL, bracketing IPv6.
func hostForURL(host, port string) string {
	if port != "" {
		return net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// newTransport builds the HTTP transport of one store: its own connection
// pool, TLS settings and, with a storage host, a dialer that connects there.
func newTransport(o *options) (*http.Transport, error) {
	tc, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   max(16, 2*o.Concurrency),
		// Objects are stored as they are: no transparent gzip.
		DisableCompression: true,
	}
	if o.dialAddr != "" {
		addr := o.dialAddr
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}
		tc.ServerName = o.tlsName
	}
	return tr, nil
}

// tlsConfig returns the TLS client settings: verification as configured,
// with CAFile and CAPath added to the system roots.
func tlsConfig(o *options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.insecureTLS {
		tc.InsecureSkipVerify = true //nolint:gosec // repoN-storage-verify-tls=n asks for it
		return tc, nil
	}
	if o.CAFile == "" && o.CAPath == "" {
		return tc, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", o.opt("storage-ca-file"), err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s holds no PEM certificate: %w", o.opt("storage-ca-file"), o.CAFile, storage.ErrInvalid)
		}
	}
	if o.CAPath != "" {
		entries, err := os.ReadDir(o.CAPath)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", o.opt("storage-ca-path"), err)
		}
		added := false
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			pem, err := os.ReadFile(filepath.Join(o.CAPath, e.Name()))
			if err != nil {
				continue // an unreadable entry (dangling link) is not a CA
			}
			if pool.AppendCertsFromPEM(pem) {
				added = true
			}
		}
		if !added {
			return nil, fmt.Errorf("%s %s holds no PEM certificate: %w", o.opt("storage-ca-path"), o.CAPath, storage.ErrInvalid)
		}
	}
	tc.RootCAs = pool
	return tc, nil
}
