package s3

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Credential refresh, as pgBackRest does it: temporary credentials are
// renewed 5 minutes before they expire. A failed renewal keeps the old
// ones while they last at least minRemaining more, and is tried again
// after refreshRetry, so that a flaky metadata service or STS does not fail
// requests that the old credentials can still sign.
const (
	refreshBefore = 5 * time.Minute
	minRemaining  = time.Minute
	refreshRetry  = 10 * time.Second

	// credentialTimeout bounds one credential request.
	credentialTimeout = 30 * time.Second
	// maxCredentialBody bounds the answer of a credential service.
	maxCredentialBody = 1 << 20

	// DefaultMetadataEndpoint is the EC2 instance metadata service.
	DefaultMetadataEndpoint = "http://169.254.169.254"
	// imdsTokenTTL is the lifetime asked for an IMDSv2 session token; it is
	// used for the two requests that follow at once, not kept.
	imdsTokenTTL   = "300"
	imdsCredPath   = "/latest/meta-data/iam/security-credentials/"
	stsAPIVersion  = "2011-06-15"
	stsSessionName = "pgsidecar"
)

// credentialSource yields the credentials that sign a request. It is safe
// for concurrent use.
type credentialSource interface {
	retrieve(ctx context.Context) (credentials, error)
}

// staticSource is repoN-s3-key-type=shared: fixed keys and token.
type staticSource struct{ c credentials }

func (s staticSource) retrieve(context.Context) (credentials, error) { return s.c, nil }

// refreshingSource caches the temporary credentials that fetch returns and
// fetches new ones before they expire. One fetch runs at a time; callers
// wait for it or for their context.
type refreshingSource struct {
	fetch func(ctx context.Context) (credentials, error)
	now   func() time.Time
	sem   chan struct{} // a token held while cur and next are used
	cur   credentials
	next  time.Time // no new fetch before this while cur is still usable
}

func newRefreshingSource(fetch func(context.Context) (credentials, error), now func() time.Time) *refreshingSource {
	return &refreshingSource{fetch: fetch, now: now, sem: make(chan struct{}, 1)}
}

func (r *refreshingSource) retrieve(ctx context.Context) (credentials, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return credentials{}, ctx.Err()
	}
	defer func() { <-r.sem }()
	now := r.now()
	if r.cur.valid(now, refreshBefore) {
		return r.cur, nil
	}
	usable := r.cur.valid(now, minRemaining)
	if usable && now.Before(r.next) {
		return r.cur, nil
	}
	r.next = now.Add(refreshRetry)
	c, err := r.fetch(ctx)
	if err != nil {
		if usable && ctx.Err() == nil {
			return r.cur, nil
		}
		return credentials{}, err
	}
	if c.accessKeyID == "" || c.secretAccessKey == "" {
		return credentials{}, errors.New("the credential service returned no access key")
	}
	r.cur = c
	return c, nil
}

// newCredentialSource returns the source for o.KeyType.
func newCredentialSource(o *options) credentialSource {
	switch o.KeyType {
	case KeyTypeAuto:
		m := &imdsSource{
			client:   &http.Client{Transport: credentialTransport(false), Timeout: credentialTimeout},
			endpoint: strings.TrimSuffix(o.metadataEndpoint, "/"),
			role:     o.Role,
			opt:      o.opt("s3-key-type") + "=" + KeyTypeAuto,
		}
		return newRefreshingSource(m.fetch, o.now)
	case KeyTypeWebID:
		w := &webIdentitySource{
			client:    &http.Client{Transport: credentialTransport(true), Timeout: credentialTimeout},
			endpoint:  strings.TrimSuffix(o.stsEndpoint, "/"),
			roleARN:   o.WebIdentityRoleARN,
			tokenFile: o.WebIdentityTokenFile,
			opt:       o.opt("s3-key-type") + "=" + KeyTypeWebID,
		}
		return newRefreshingSource(w.fetch, o.now)
	default:
		return staticSource{credentials{accessKeyID: o.Key, secretAccessKey: o.KeySecret, sessionToken: o.Token}}
	}
}

// credentialTransport is the transport of a credential service: its own
// small pool, system roots; the instance metadata service is never reached
// through a proxy.
func credentialTransport(proxy bool) *http.Transport {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     30 * time.Second,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	if proxy {
		tr.Proxy = http.ProxyFromEnvironment
	}
	return tr
}

// readBody reads a bounded credential answer and closes it.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCredentialBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCredentialBody {
		return nil, fmt.Errorf("answer longer than %d bytes", maxCredentialBody)
	}
	return b, nil
}

// imdsSource is repoN-s3-key-type=auto: the credentials of the EC2
// instance's IAM role from the instance metadata service, with an IMDSv2
// session token when the service gives one (IMDSv1 otherwise), as
// pgBackRest does.
type imdsSource struct {
	client   *http.Client
	endpoint string
	role     string // repoN-s3-role, or the one discovered; guarded by the refreshingSource
	opt      string // "repoN-s3-key-type=auto", for messages
}

// imdsCredentials is the instance metadata service's credentials document.
type imdsCredentials struct {
	Code            string
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	Token           string
	Expiration      time.Time
}

func (m *imdsSource) fetch(ctx context.Context) (credentials, error) {
	header := http.Header{}
	// IMDSv2: a session token first. Any answer but 200 means the service
	// does not do IMDSv2; a network error means there is no service.
	resp, err := m.do(ctx, http.MethodPut, "/latest/api/token", http.Header{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": {imdsTokenTTL}})
	if err != nil {
		return credentials{}, fmt.Errorf("%s: instance metadata service %s: %w", m.opt, m.endpoint, err)
	}
	body, err := readBody(resp)
	switch {
	case err != nil:
		return credentials{}, fmt.Errorf("%s: read the IMDSv2 token: %w", m.opt, err)
	case resp.StatusCode == http.StatusOK && len(body) > 0:
		header.Set("X-Aws-Ec2-Metadata-Token", strings.TrimSpace(string(body)))
	}

	if m.role == "" {
		resp, err := m.do(ctx, http.MethodGet, imdsCredPath, header)
		if err != nil {
			return credentials{}, fmt.Errorf("%s: get the instance's IAM role: %w", m.opt, err)
		}
		body, err := readBody(resp)
		switch {
		case err != nil:
			return credentials{}, fmt.Errorf("%s: read the instance's IAM role: %w", m.opt, err)
		case resp.StatusCode == http.StatusNotFound:
			return credentials{}, fmt.Errorf("%s: the instance has no IAM role (is a valid IAM role associated with this instance?): %w", m.opt, storage.ErrPermission)
		case resp.StatusCode != http.StatusOK:
			return credentials{}, fmt.Errorf("%s: get the instance's IAM role: HTTP %d", m.opt, resp.StatusCode)
		}
		role, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if role = strings.TrimSpace(role); role == "" {
			return credentials{}, fmt.Errorf("%s: the instance metadata service names no IAM role", m.opt)
		}
		m.role = role
	}

	resp, err = m.do(ctx, http.MethodGet, imdsCredPath+url.PathEscape(m.role), header)
	if err != nil {
		return credentials{}, fmt.Errorf("%s: get the credentials of role %s: %w", m.opt, m.role, err)
	}
	body, err = readBody(resp)
	switch {
	case err != nil:
		return credentials{}, fmt.Errorf("%s: read the credentials of role %s: %w", m.opt, m.role, err)
	case resp.StatusCode == http.StatusNotFound:
		return credentials{}, fmt.Errorf("%s: role %s not found (is it an IAM role associated with this instance?): %w", m.opt, m.role, storage.ErrPermission)
	case resp.StatusCode != http.StatusOK:
		return credentials{}, fmt.Errorf("%s: get the credentials of role %s: HTTP %d", m.opt, m.role, resp.StatusCode)
	}
	var doc imdsCredentials
	if err := json.Unmarshal(body, &doc); err != nil {
		// The document holds secrets: never quote it.
		return credentials{}, fmt.Errorf("%s: the credentials of role %s are not a valid JSON document", m.opt, m.role)
	}
	switch {
	case doc.Code != "Success":
		return credentials{}, fmt.Errorf("%s: the credentials of role %s are not available: code %q", m.opt, m.role, doc.Code)
	case doc.AccessKeyID == "" || doc.SecretAccessKey == "" || doc.Token == "" || doc.Expiration.IsZero():
		return credentials{}, fmt.Errorf("%s: the credentials of role %s lack the key, secret, token or expiration", m.opt, m.role)
	}
	return credentials{accessKeyID: doc.AccessKeyID, secretAccessKey: doc.SecretAccessKey, sessionToken: doc.Token, expires: doc.Expiration}, nil
}

func (m *imdsSource) do(ctx context.Context, method, path string, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, m.endpoint+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := m.client.Do(req)
	if ue, ok := err.(*url.Error); ok { //nolint:errorlint // only the HTTP client's own outer wrapper
		err = ue.Err
	}
	return resp, err
}

// webIdentitySource is repoN-s3-key-type=web-id: AssumeRoleWithWebIdentity
// at the regional STS endpoint with the role AWS_ROLE_ARN and the token in
// AWS_WEB_IDENTITY_TOKEN_FILE, as EKS IAM roles for service accounts set
// them. The token file is read at every renewal, since it is rotated.
type webIdentitySource struct {
	client             *http.Client
	endpoint           string
	roleARN, tokenFile string
	opt                string // "repoN-s3-key-type=web-id", for messages
}

// stsCredentialsResponse is the answer of AssumeRoleWithWebIdentity.
type stsCredentialsResponse struct {
	XMLName     xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	Credentials struct {
		AccessKeyID     string    `xml:"AccessKeyId"`
		SecretAccessKey string    `xml:"SecretAccessKey"`
		SessionToken    string    `xml:"SessionToken"`
		Expiration      time.Time `xml:"Expiration"`
	} `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
}

// stsErrorResponse is an error answer of STS.
type stsErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

func (w *webIdentitySource) fetch(ctx context.Context) (credentials, error) {
	token, err := os.ReadFile(w.tokenFile)
	if err != nil {
		return credentials{}, fmt.Errorf("%s: read the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE): %w", w.opt, err)
	}
	tok := strings.TrimSpace(string(token))
	if tok == "" {
		return credentials{}, fmt.Errorf("%s: the web identity token file %s (AWS_WEB_IDENTITY_TOKEN_FILE) is empty", w.opt, w.tokenFile)
	}
	form := url.Values{
		"Action":           {"AssumeRoleWithWebIdentity"},
		"Version":          {stsAPIVersion},
		"RoleArn":          {w.roleARN},
		"RoleSessionName":  {stsSessionName},
		"WebIdentityToken": {tok},
	}
	// A POST keeps the token out of URLs that proxies and servers log.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.endpoint+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return credentials{}, fmt.Errorf("%s: STS endpoint %s: %w", w.opt, w.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Accept", "text/xml")
	resp, err := w.client.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok { //nolint:errorlint // only the HTTP client's own outer wrapper
			err = ue.Err
		}
		return credentials{}, fmt.Errorf("%s: AssumeRoleWithWebIdentity at %s: %w", w.opt, w.endpoint, err)
	}
	body, err := readBody(resp)
	if err != nil {
		return credentials{}, fmt.Errorf("%s: read the answer of AssumeRoleWithWebIdentity at %s: %w", w.opt, w.endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e stsErrorResponse
		_ = xml.Unmarshal(body, &e)
		re := &ResponseError{StatusCode: resp.StatusCode, Code: e.Code, Message: e.Message, RequestID: e.RequestID}
		if resp.StatusCode == http.StatusForbidden {
			return credentials{}, fmt.Errorf("%s: AssumeRoleWithWebIdentity of role %s at %s: %w: %w", w.opt, w.roleARN, w.endpoint, storage.ErrPermission, re)
		}
		return credentials{}, fmt.Errorf("%s: AssumeRoleWithWebIdentity of role %s at %s: %w", w.opt, w.roleARN, w.endpoint, re)
	}
	var out stsCredentialsResponse
	if err := xml.Unmarshal(body, &out); err != nil {
		// The answer holds secrets: never quote it.
		return credentials{}, fmt.Errorf("%s: the answer of AssumeRoleWithWebIdentity at %s is not a valid XML document", w.opt, w.endpoint)
	}
	c := out.Credentials
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" || c.Expiration.IsZero() {
		return credentials{}, fmt.Errorf("%s: the answer of AssumeRoleWithWebIdentity at %s lacks the key, secret, token or expiration", w.opt, w.endpoint)
	}
	return credentials{accessKeyID: c.AccessKeyID, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken, expires: c.Expiration}, nil
}

// stsEndpointFor returns the regional STS endpoint of region.
func stsEndpointFor(region string) string {
	suffix := ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = ".amazonaws.com.cn"
	}
	return "https://sts." + region + suffix
}
