package azure

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Defaults applied by New to the zero values of Config fields.
const (
	// DefaultEndpoint is pgBackRest's default repoN-azure-endpoint.
	DefaultEndpoint = "blob.core.windows.net"
	// DefaultBlockSize is pgBackRest's default repoN-storage-upload-chunk-size
	// for Azure.
	DefaultBlockSize = 4 << 20
	// DefaultConcurrency is the number of blocks of one Put that are held in
	// memory and uploaded at the same time.
	DefaultConcurrency = 4
)

// Block size limits: pgBackRest's lower bound for
// repoN-storage-upload-chunk-size and the service's largest block.
const (
	minBlockSize = 64 << 10
	maxBlockSize = 4000 << 20
)

// Key types (repoN-azure-key-type) and URI styles (repoN-azure-uri-style).
const (
	KeyTypeShared = "shared"
	KeyTypeSAS    = "sas"
	URIStyleHost  = "host"
	URIStylePath  = "path"
)

// Config configures an Azure store. Field comments name the pgBackRest
// option each field comes from.
type Config struct {
	// Repo is the repository index N used in the option names of error
	// messages ("repo2-azure-container is required"); 0 means 1.
	Repo int
	// Account is the storage account (repoN-azure-account).
	Account string
	// Container is the blob container, which must exist
	// (repoN-azure-container).
	Container string
	// Prefix is repoN-path without its leading "/"; "" (repoN-path=/) is the
	// container root. Keys are stored as Prefix + "/" + key.
	Prefix string
	// Endpoint is repoN-azure-endpoint: a host[:port] reached over HTTPS
	// (default blob.core.windows.net), or a URL. A URL with a path is taken
	// as the account's complete service URL, such as
	// http://127.0.0.1:10000/devstoreaccount1 for Azurite.
	Endpoint string
	// URIStyle is repoN-azure-uri-style: "host" puts the account in the host
	// name (https://<account>.<endpoint>/<container>), "path" in the path
	// (https://<endpoint>/<account>/<container>). "" means "host", or "path"
	// when Host is set, as in pgBackRest.
	URIStyle string
	// KeyType is repoN-azure-key-type: "shared" (the default; Key is the
	// base64 account key) or "sas" (Key is a shared access signature token).
	KeyType string
	// Key is repoN-azure-key. It is a secret: it is never logged or quoted
	// in errors.
	Key string
	// Host is repoN-storage-host. As in pgBackRest it replaces the endpoint
	// host (and makes "path" the default URI style); it was meant for
	// emulators.
	Host string
	// Port is repoN-storage-port; 0 means the endpoint's port, or 443 (80 for
	// an http:// endpoint URL). Set it only when the option is given, since
	// any non-zero value replaces a port written in Endpoint.
	Port int
	// VerifyTLS is repoN-storage-verify-tls. Callers default it to true:
	// false accepts any server certificate.
	VerifyTLS bool
	// CAFile is repoN-storage-ca-file, a PEM file of certificate authorities
	// trusted in addition to the system's.
	CAFile string
	// BlockSize is repoN-storage-upload-chunk-size, the size of the blocks a
	// Put stages (0 means DefaultBlockSize). Each Put holds at most
	// BlockSize*Concurrency bytes in memory.
	BlockSize int64
	// Concurrency is the number of block buffers per Put, and so the number
	// of blocks uploaded at once (0 means DefaultConcurrency).
	Concurrency int
	// MaxRetries is the number of times the driver resends one failed
	// request (a connection error or a 408, 429, 500, 502, 503 or 504
	// answer) after a jittered backoff from 200ms doubling to 5s; 0 means 3
	// and a negative value disables retries. The storage/retry decorator
	// retries whole operations on top of this.
	MaxRetries int
}

// String returns the configuration with Key redacted, so that printing a
// Config with %v or %+v never shows the secret.
func (c Config) String() string {
	key := `""`
	if c.Key != "" {
		key = "REDACTED"
	}
	return fmt.Sprintf("azure.Config{Repo:%d Account:%q Container:%q Prefix:%q Endpoint:%q URIStyle:%q KeyType:%q Key:%s "+
		"Host:%q Port:%d VerifyTLS:%t CAFile:%q BlockSize:%d Concurrency:%d MaxRetries:%d}",
		c.Repo, c.Account, c.Container, c.Prefix, c.Endpoint, c.URIStyle, c.KeyType, key,
		c.Host, c.Port, c.VerifyTLS, c.CAFile, c.BlockSize, c.Concurrency, c.MaxRetries)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// configError is a configuration problem; it matches storage.ErrInvalid.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func (e *configError) Is(target error) bool { return target == storage.ErrInvalid }

func (c Config) option(name string) string {
	n := c.Repo
	if n == 0 {
		n = 1
	}
	return "repo" + strconv.Itoa(n) + "-" + name
}

func (c Config) invalidf(option, format string, args ...any) error {
	return &configError{msg: c.option(option) + " " + fmt.Sprintf(format, args...)}
}

func lowerAlnum(r byte) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }

// validAccount reports whether name holds only lower-case letters and digits.
func validAccount(name string) bool {
	for i := range len(name) {
		if !lowerAlnum(name[i]) {
			return false
		}
	}
	return name != ""
}

// validContainer reports whether name is a container name: 3 to 63 lower-case
// letters, digits and hyphens, starting and ending with a letter or digit,
// with no two hyphens in a row.
func validContainer(name string) bool {
	if len(name) < 3 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' || strings.Contains(name, "--") {
		return false
	}
	for i := range len(name) {
		if !lowerAlnum(name[i]) && name[i] != '-' {
			return false
		}
	}
	return true
}

// settings is a validated Config with its defaults applied.
type settings struct {
	containerURL string // without query
	prefix       string // "" or ending in "/"
	sharedKey    string // base64 account key, or ""
	sasQuery     string // SAS token without "?", or ""
	blockSize    int64
	concurrency  int
}

// Validate reports every problem with c, joined; each matches
// storage.ErrInvalid and names the pgBackRest option at fault. It does no
// I/O (New reads CAFile).
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func (c Config) settings() (settings, error) {
	var errs []error
	s := settings{blockSize: c.BlockSize, concurrency: c.Concurrency}

	switch {
	case c.Account == "":
		errs = append(errs, c.invalidf("azure-account", "is required"))
	case !validAccount(c.Account):
		errs = append(errs, c.invalidf("azure-account", "%q may hold only lower-case letters and digits", c.Account))
	}
	switch {
	case c.Container == "":
		errs = append(errs, c.invalidf("azure-container", "is required"))
	case !validContainer(c.Container):
		errs = append(errs, c.invalidf("azure-container", "%q is not a valid container name (3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit)", c.Container))
	}

	switch c.KeyType {
	case "", KeyTypeShared:
		switch {
		case c.Key == "":
			errs = append(errs, c.invalidf("azure-key", "is required"))
		default:
			if _, err := base64.StdEncoding.DecodeString(c.Key); err != nil {
				errs = append(errs, c.invalidf("azure-key", "is not valid base64 (%s=%s needs the base64 account key)", c.option("azure-key-type"), KeyTypeShared))
			}
			s.sharedKey = c.Key
		}
	case KeyTypeSAS:
		q := strings.TrimPrefix(c.Key, "?")
		switch {
		case q == "":
			errs = append(errs, c.invalidf("azure-key", "is required"))
		default:
			// The parse error is not quoted: it would show part of the token.
			if v, err := url.ParseQuery(q); err != nil || v.Get("sig") == "" {
				errs = append(errs, c.invalidf("azure-key", "is not a SAS token (a query string with a sig parameter)"))
			}
			s.sasQuery = q
		}
	default:
		errs = append(errs, c.invalidf("azure-key-type", "%q is not %q or %q", c.KeyType, KeyTypeShared, KeyTypeSAS))
	}

	prefix := strings.Trim(c.Prefix, "/")
	if prefix != "" {
		if err := storage.ValidateKey(prefix); err != nil {
			errs = append(errs, c.invalidf("path", "%q is not a clean path", c.Prefix))
		}
		s.prefix = prefix + "/"
	}

	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, c.invalidf("storage-port", "%d is not between 1 and 65535", c.Port))
	}
	if svc, err := c.serviceURL(); err != nil {
		errs = append(errs, err)
	} else {
		s.containerURL = svc + "/" + c.Container
	}

	switch {
	case s.blockSize == 0:
		s.blockSize = DefaultBlockSize
	case s.blockSize < minBlockSize || s.blockSize > maxBlockSize:
		errs = append(errs, c.invalidf("storage-upload-chunk-size", "%d is not between %d (64KiB) and %d (4000MiB)", s.blockSize, minBlockSize, maxBlockSize))
	}
	switch {
	case s.concurrency == 0:
		s.concurrency = DefaultConcurrency
	case s.concurrency < 0:
		errs = append(errs, &configError{msg: fmt.Sprintf("azure upload concurrency %d is negative", s.concurrency)})
	}
	if err := errors.Join(errs...); err != nil {
		return settings{}, err
	}
	return s, nil
}

// serviceURL returns the account's blob service URL without a trailing
// slash, following pgBackRest's storageAzureHelper: Host replaces the
// endpoint and then defaults the URI style to path, and Port replaces the
// endpoint's port.
func (c Config) serviceURL() (string, error) {
	raw, option := c.Endpoint, "azure-endpoint"
	if raw == "" {
		raw = DefaultEndpoint
	}
	style := c.URIStyle
	if c.Host != "" {
		raw, option = c.Host, "storage-host"
		if style == "" {
			style = URIStylePath
		}
	}
	switch style {
	case "":
		style = URIStyleHost
	case URIStyleHost, URIStylePath:
	default:
		return "", c.invalidf("azure-uri-style", "%q is not %q or %q", c.URIStyle, URIStyleHost, URIStylePath)
	}

	u, err := parseEndpoint(raw)
	if err != nil {
		return "", c.invalidf(option, "%q %s", raw, err)
	}
	hostname, port := u.Hostname(), u.Port()
	if c.Port != 0 {
		port = strconv.Itoa(c.Port)
	}
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	join := func(host string) string {
		if port == "" {
			if strings.Contains(host, ":") {
				return "[" + host + "]"
			}
			return host
		}
		return net.JoinHostPort(host, port)
	}

	if path := strings.Trim(u.Path, "/"); path != "" {
		// A complete service URL: the account is already in it.
		if c.URIStyle == URIStyleHost {
			return "", c.invalidf("azure-uri-style", "%q does not fit %s %q, whose path already names the account", c.URIStyle, c.option(option), raw)
		}
		return u.Scheme + "://" + join(hostname) + "/" + path, nil
	}
	if style == URIStylePath {
		return u.Scheme + "://" + join(hostname) + "/" + c.Account, nil
	}
	if net.ParseIP(hostname) != nil {
		return "", c.invalidf("azure-uri-style", "%q needs a DNS name, not the address %s; use %q", URIStyleHost, hostname, URIStylePath)
	}
	return u.Scheme + "://" + join(c.Account+"."+hostname), nil
}

// parseEndpoint parses host[:port] (HTTPS) or an http(s) URL without
// credentials, query or fragment.
func parseEndpoint(raw string) (*url.URL, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("is not a host[:port] or an http(s) URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must use http or https")
	case u.Hostname() == "":
		return nil, errors.New("has no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("may not hold credentials, a query or a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("has an invalid port")
		}
	}
	return u, nil
}

// tlsConfig returns the client TLS settings; it reads CAFile.
func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if !c.VerifyTLS {
		tc.InsecureSkipVerify = true //nolint:gosec // repoN-storage-verify-tls=n asks for it
	}
	if c.CAFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, &configError{msg: fmt.Sprintf("read %s %s: %v", c.option("storage-ca-file"), c.CAFile, err)}
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, c.invalidf("storage-ca-file", "%s holds no PEM certificate", c.CAFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
