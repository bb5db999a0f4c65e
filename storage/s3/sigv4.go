package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// AWS Signature Version 4 (docs.aws.amazon.com/AmazonS3/latest/API/
// sig-v4-header-based-auth.html), header-based, single chunk.
const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	// unsignedPayload is the x-amz-content-sha256 value of a body that the
	// signature does not cover (TLS protects it in transit).
	unsignedPayload = "UNSIGNED-PAYLOAD"
	// emptySHA256 is the hex SHA-256 of an empty body.
	emptySHA256   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	amzDateFormat = "20060102T150405Z"

	headerAmzDate          = "X-Amz-Date"
	headerAmzContentSHA256 = "X-Amz-Content-Sha256"
	headerAmzSecurityToken = "X-Amz-Security-Token"
)

// unsignedHeader reports a request header (lowercase) left out of the
// signature: the transport may add, drop or rewrite it (Content-Length on
// a retried connection, Expect with 100-continue), and Authorization holds
// the signature itself.
func unsignedHeader(name string) bool {
	switch name {
	case "authorization", "content-length", "expect", "user-agent", "accept-encoding", "connection", "transfer-encoding":
		return true
	}
	return false
}

// credentials are one set of AWS credentials. They are secrets: the type
// formats as redacted so that they cannot leak through a log or an error.
type credentials struct {
	accessKeyID, secretAccessKey, sessionToken string
	// expires is when temporary credentials stop working; zero for static
	// ones.
	expires time.Time
}

func (credentials) String() string   { return "credentials{" + redacted + "}" }
func (credentials) GoString() string { return "s3.credentials{" + redacted + "}" }

// valid reports whether c holds credentials usable at now for at least d.
func (c credentials) valid(now time.Time, d time.Duration) bool {
	return c.accessKeyID != "" && (c.expires.IsZero() || now.Add(d).Before(c.expires))
}

// sha256Hex returns the lowercase hex SHA-256 of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// signingKey derives the key of one day, region and service from the
// secret access key.
func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// signRequest adds X-Amz-Date, X-Amz-Content-Sha256, X-Amz-Security-Token
// (with a session token) and the Authorization header to req. payloadHash
// is the hex SHA-256 of the body or unsignedPayload. The request's URL must
// carry the exact escaped path (URL.RawPath, or a Path that needs no
// escaping) and query that are sent; they are signed as they are, so
// requests must be built with encodePath and canonicalQuery.
func signRequest(req *http.Request, c credentials, region, service, payloadHash string, now time.Time) {
	amzDate := now.UTC().Format(amzDateFormat)
	date := amzDate[:8]
	req.Header.Set(headerAmzDate, amzDate)
	req.Header.Set(headerAmzContentSHA256, payloadHash)
	if c.sessionToken != "" {
		req.Header.Set(headerAmzSecurityToken, c.sessionToken)
	} else {
		req.Header.Del(headerAmzSecurityToken)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	canonical, signed := canonicalRequest(req.Method, req.URL.EscapedPath(), req.URL.RawQuery, host, req.Header, payloadHash)
	scope := date + "/" + region + "/" + service + "/aws4_request"
	stringToSign := sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex([]byte(canonical))
	sig := hex.EncodeToString(hmacSHA256(signingKey(c.secretAccessKey, date, region, service), stringToSign))
	req.Header.Set("Authorization", sigAlgorithm+" Credential="+c.accessKeyID+"/"+scope+
		",SignedHeaders="+signed+",Signature="+sig)
}

// canonicalRequest returns the canonical request of SigV4 and its list of
// signed headers. path is the escaped path as sent, rawQuery the query as
// sent (re-canonicalised here: sorted, strictly encoded).
func canonicalRequest(method, path, rawQuery, host string, h http.Header, payloadHash string) (canonical, signedHeaders string) {
	if path == "" {
		path = "/"
	}
	type kv struct{ k, v string }
	headers := []kv{{"host", strings.TrimSpace(host)}}
	for name, values := range h {
		lower := strings.ToLower(name)
		if unsignedHeader(lower) || lower == "host" {
			continue
		}
		vs := make([]string, len(values))
		for i, v := range values {
			vs[i] = trimHeaderValue(v)
		}
		headers = append(headers, kv{lower, strings.Join(vs, ",")})
	}
	sort.Slice(headers, func(i, j int) bool { return headers[i].k < headers[j].k })

	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(canonicalQueryOf(rawQuery))
	b.WriteByte('\n')
	names := make([]string, len(headers))
	for i, hv := range headers {
		b.WriteString(hv.k)
		b.WriteByte(':')
		b.WriteString(hv.v)
		b.WriteByte('\n')
		names[i] = hv.k
	}
	signedHeaders = strings.Join(names, ";")
	b.WriteByte('\n')
	b.WriteString(signedHeaders)
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), signedHeaders
}

// trimHeaderValue trims a header value and collapses its runs of spaces,
// as the canonical headers of SigV4 require.
func trimHeaderValue(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	return strings.Join(strings.Fields(v), " ")
}

// canonicalQueryOf re-encodes a raw query canonically: parameters sorted by
// name then value, names and values encoded with uriEncode, a parameter
// without "=" given an empty value ("?uploads" signs as "uploads=").
func canonicalQueryOf(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for _, p := range strings.Split(rawQuery, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		// Decode what the sender encoded ("+" is a plus sign, as S3 reads
		// it); a malformed escape is signed as is.
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		params = append(params, kv{uriEncode(k, false), uriEncode(v, false)})
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].k != params[j].k {
			return params[i].k < params[j].k
		}
		return params[i].v < params[j].v
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// canonicalQuery builds a query string from names and values that is
// already canonical, so what is sent is what is signed.
func canonicalQuery(params map[string]string) string {
	if len(params) == 0 {
		return ""
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(uriEncode(k, false))
		b.WriteByte('=')
		b.WriteString(uriEncode(params[k], false))
	}
	return b.String()
}

// encodePath escapes an object path for the request line and the
// signature: each byte outside the unreserved set as %XX, "/" kept.
func encodePath(p string) string { return uriEncode(p, true) }

// uriEncode is SigV4's UriEncode: the unreserved characters A-Z, a-z, 0-9,
// '-', '.', '_' and '~' as they are, "/" kept when keepSlash, every other
// byte as %XX with uppercase hex digits (a space is %20, never "+").
func uriEncode(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && (s[i] != '/' || !keepSlash) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || (c == '/' && keepSlash) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
