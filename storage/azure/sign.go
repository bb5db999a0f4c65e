package azure

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// serviceVersion is the x-ms-version the driver speaks: 2019-12-12 or later
// is needed for blocks and Put Blob bodies larger than 100 and 256 MiB.
const serviceVersion = "2021-08-06"

// stringToSign returns the Shared Key string to sign of req for account,
// as https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
// defines it for version 2009-09-19 and later: the verb, the standard
// headers (Content-Length empty when zero), the x-ms- headers lower-cased,
// sorted and joined as name:value lines, then the canonicalized resource:
// "/" + account + the escaped URI path, followed by one "\nname:value" line
// per query parameter, names lower-cased and sorted, values decoded, sorted
// and joined with commas.
func stringToSign(req *http.Request, account string) string {
	var b strings.Builder
	b.WriteString(req.Method)
	// The standard headers in their order. Date stays empty because every
	// request carries x-ms-date.
	for _, name := range [...]string{
		"Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
		"If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range",
	} {
		b.WriteByte('\n')
		switch {
		case name == "Content-Length":
			if req.ContentLength > 0 {
				b.WriteString(strconv.FormatInt(req.ContentLength, 10))
			}
		default:
			b.WriteString(req.Header.Get(name))
		}
	}
	b.WriteByte('\n')

	var msNames []string
	for name := range req.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-ms-") {
			msNames = append(msNames, lower)
		}
	}
	slices.Sort(msNames)
	for _, name := range msNames {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(canonicalHeaderValue(req.Header.Values(name)))
		b.WriteByte('\n')
	}

	b.WriteByte('/')
	b.WriteString(account)
	if p := req.URL.EscapedPath(); p != "" {
		b.WriteString(p)
	} else {
		b.WriteByte('/')
	}
	// Our own queries are strictly encoded, so ParseQuery cannot fail on
	// them; a SAS token is never combined with Shared Key.
	query, _ := url.ParseQuery(req.URL.RawQuery)
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := slices.Clone(query[name])
		slices.Sort(values)
		b.WriteByte('\n')
		b.WriteString(strings.ToLower(name))
		b.WriteByte(':')
		b.WriteString(strings.Join(values, ","))
	}
	return b.String()
}

// canonicalHeaderValue joins a header's values with commas after trimming
// them and folding runs of white space to one space.
func canonicalHeaderValue(values []string) string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// signature returns the base64 HMAC-SHA256 of s under key.
func signature(key []byte, s string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// signSharedKey sets req's Authorization header. req must already carry
// x-ms-date and x-ms-version.
func signSharedKey(req *http.Request, account string, key []byte) {
	req.Header.Set("Authorization", "SharedKey "+account+":"+signature(key, stringToSign(req, account)))
}

// escapePath percent-encodes a blob or container name for a URI path:
// every byte but the unreserved characters of RFC 3986 and "/" is escaped,
// as pgBackRest does.
func escapePath(s string) string { return escape(s, true) }

// escapeQuery percent-encodes a query parameter name or value (spaces as
// %20, never "+").
func escapeQuery(s string) string { return escape(s, false) }

func escape(s string, keepSlash bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/' && keepSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
