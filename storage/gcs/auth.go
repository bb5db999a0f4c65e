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
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// scopeReadWrite is the OAuth scope pgBackRest asks for: object reads and
// writes, nothing on buckets' IAM.
const scopeReadWrite = "https://www.googleapis.com/auth/devstorage.read_write"

// defaultTokenURI is the token endpoint of a key file that names none.
const defaultTokenURI = "https://oauth2.googleapis.com/token"

// jwtLifetime is how long a signed assertion is valid, the most Google
// accepts.
const jwtLifetime = time.Hour

// tokenTimeout bounds one token request when the caller's context does not.
const tokenTimeout = time.Minute

// authorizer returns the value of the Authorization header of a request.
type authorizer interface {
	// authorization returns the header value, fetching a token if needed.
	authorization(ctx context.Context) (string, error)
	// reject reports that the service refused value (401), so that a later
	// call fetches a fresh token instead of reusing it.
	reject(value string)
}

// staticToken is a fixed access token (repoN-gcs-key-type=token).
type staticToken string

func (t staticToken) authorization(context.Context) (string, error) { return string(t), nil }
func (staticToken) reject(string)                                   {}

// newStaticToken returns the Authorization value of the access token key.
// pgBackRest sends the key as the whole header value, so a key that already
// names its type ("Bearer ya29...") is kept as it is.
func newStaticToken(key string) staticToken {
	if typ, _, ok := strings.Cut(key, " "); ok && strings.EqualFold(typ, "bearer") {
		return staticToken(key)
	}
	return staticToken("Bearer " + key)
}

// token is one access token and when to stop using it.
type token struct {
	value   string // the Authorization value: "<type> <token>"
	refresh time.Time
}

// fetchFunc obtains a new token; start is the time the request began.
type fetchFunc func(ctx context.Context, start time.Time) (token, error)

// cachedToken caches the token of fetch until shortly before it expires.
// One caller fetches at a time; the others wait for its result, or for
// their context.
type cachedToken struct {
	fetch fetchFunc
	now   func() time.Time
	lock  chan struct{} // a mutex whose waiters honour their context
	tok   token         // guarded by lock
}

func newCachedToken(fetch fetchFunc, now func() time.Time) *cachedToken {
	return &cachedToken{fetch: fetch, now: now, lock: make(chan struct{}, 1)}
}

func (c *cachedToken) authorization(ctx context.Context) (string, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.lock }()
	now := c.now()
	if c.tok.value != "" && now.Before(c.tok.refresh) {
		return c.tok.value, nil
	}
	tctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	tok, err := c.fetch(tctx, now)
	if err != nil {
		return "", err
	}
	c.tok = tok
	return tok.value, nil
}

func (c *cachedToken) reject(value string) {
	c.lock <- struct{}{}
	if c.tok.value == value {
		c.tok = token{}
	}
	<-c.lock
}

// refreshTime is when a token obtained at start, valid for lifetime, is
// refreshed: five minutes before it expires, or halfway through a short
// lifetime, so that it never expires in the middle of a request.
func refreshTime(start time.Time, lifetime time.Duration) time.Time {
	return start.Add(lifetime - min(5*time.Minute, lifetime/2))
}

// tokenResponse is the answer of a token endpoint or of the metadata
// server.
type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// doTokenRequest sends req and parses the token in its answer. what names
// the token source in errors. A refusal (4xx other than 408 and 429)
// matches storage.ErrPermission: retrying cannot help.
func doTokenRequest(client *http.Client, req *http.Request, start time.Time, what string) (token, error) {
	resp, err := client.Do(req)
	if err != nil {
		return token{}, fmt.Errorf("get access token from %s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return token{}, fmt.Errorf("get access token from %s: read answer: %w", what, err)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || tr.Error != "" {
		msg := fmt.Sprintf("get access token from %s: HTTP %s", what, resp.Status)
		if tr.Error != "" {
			msg += fmt.Sprintf(": [%s] %s", clip(tr.Error), clip(tr.ErrorDescription))
		}
		switch c := resp.StatusCode; {
		case c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests,
			c == http.StatusOK: // an error in a 200 answer
			return token{}, fmt.Errorf("%s: %w", msg, storage.ErrPermission)
		default:
			return token{}, errors.New(msg)
		}
	}
	if jerr != nil {
		return token{}, fmt.Errorf("get access token from %s: answer is not JSON", what)
	}
	if tr.AccessToken == "" || tr.TokenType == "" {
		return token{}, fmt.Errorf("get access token from %s: answer lacks access_token or token_type", what)
	}
	var secs float64
	if err := json.Unmarshal(tr.ExpiresIn, &secs); err != nil {
		var s string // some servers quote numbers
		if json.Unmarshal(tr.ExpiresIn, &s) != nil || json.Unmarshal([]byte(s), &secs) != nil {
			return token{}, fmt.Errorf("get access token from %s: answer lacks a numeric expires_in", what)
		}
	}
	if secs <= 0 {
		return token{}, fmt.Errorf("get access token from %s: token already expired (expires_in %v)", what, secs)
	}
	return token{
		value:   tr.TokenType + " " + tr.AccessToken,
		refresh: refreshTime(start, time.Duration(secs*float64(time.Second))),
	}, nil
}

// clip shortens a message from a server before it goes into an error.
func clip(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// serviceKey is the part of a service-account key file that is used.
type serviceKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// serviceAccount exchanges JWTs signed with a service account's key for
// access tokens (OAuth 2.0 JWT bearer grant).
type serviceAccount struct {
	email    string
	keyID    string
	key      *rsa.PrivateKey
	tokenURI string
	client   *http.Client
}

// loadServiceAccount reads and checks the key file at path. Errors name the
// file, never its content.
func loadServiceAccount(path string, client *http.Client) (*serviceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("service key file %s is not readable: %w", path, err)
	}
	var k serviceKey
	if err := json.Unmarshal(b, &k); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("service key file %s is not JSON (syntax error at byte %d): %w", path, se.Offset, storage.ErrInvalid)
		}
		return nil, fmt.Errorf("service key file %s is not a service account key: %w", path, storage.ErrInvalid)
	}
	switch {
	case k.Type != "" && k.Type != "service_account":
		return nil, fmt.Errorf("service key file %s holds credentials of type %q, not service_account: %w", path, k.Type, storage.ErrInvalid)
	case k.ClientEmail == "" || k.PrivateKey == "":
		return nil, fmt.Errorf("service key file %s lacks client_email or private_key: %w", path, storage.ErrInvalid)
	}
	if k.TokenURI == "" {
		k.TokenURI = defaultTokenURI
	}
	if u, err := url.Parse(k.TokenURI); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("service key file %s: token_uri %q is not an https URL: %w", path, k.TokenURI, storage.ErrInvalid)
	}
	key, err := parseRSAKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("service key file %s: private_key: %w", path, err)
	}
	return &serviceAccount{email: k.ClientEmail, keyID: k.PrivateKeyID, key: key, tokenURI: k.TokenURI, client: client}, nil
}

// parseRSAKey parses a PEM RSA private key in PKCS #8 or PKCS #1 form.
func parseRSAKey(s string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, fmt.Errorf("not a PEM block: %w", storage.ErrInvalid)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk, nil
		}
		return nil, fmt.Errorf("not an RSA key: %w", storage.ErrInvalid)
	}
	if rk, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return rk, nil
	}
	return nil, fmt.Errorf("not a PKCS #8 or PKCS #1 RSA key: %w", storage.ErrInvalid)
}

// assertion returns the signed JWT of the grant, issued at start.
func (a *serviceAccount) assertion(start time.Time) (string, error) {
	header := struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid,omitempty"`
	}{"RS256", "JWT", a.keyID}
	claims := struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Iat   int64  `json:"iat"`
	}{a.email, scopeReadWrite, a.tokenURI, start.Add(jwtLifetime).Unix(), start.Unix()}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, a.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign token request: %w", err)
	}
	return signed + "." + enc.EncodeToString(sig), nil
}

// fetch implements fetchFunc.
func (a *serviceAccount) fetch(ctx context.Context, start time.Time) (token, error) {
	jwt, err := a.assertion(start)
	if err != nil {
		return token{}, err
	}
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {jwt},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURI, strings.NewReader(form))
	if err != nil {
		return token{}, fmt.Errorf("token request to %s: %w", a.tokenURI, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return doTokenRequest(a.client, req, start, a.tokenURI)
}

// metadataToken asks the GCE/GKE metadata server for the token of the
// default service account.
type metadataToken struct {
	url    string
	client *http.Client
}

// fetch implements fetchFunc.
func (m *metadataToken) fetch(ctx context.Context, start time.Time) (token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return token{}, fmt.Errorf("token request to %s: %w", m.url, err)
	}
	req.Header.Set("Metadata-Flavor", "Google")
	return doTokenRequest(m.client, req, start, "the metadata server")
}
