package s3

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The examples of "Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk" in the Amazon S3 API reference
// (sig-v4-header-based-auth): bucket examplebucket in us-east-1, access key
// AKIAIOSFODNN7EXAMPLE, signed on 2013-05-24 at midnight UTC.
var awsExampleCreds = credentials{accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}

var awsExampleTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

func TestSignAWSExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		method    string
		path      string // unescaped
		query     map[string]string
		header    map[string]string
		body      string
		canonical string // the canonical request the example shows ("" not shown)
		want      string // the Authorization header of the example
	}{
		{
			name: "GetObject", method: http.MethodGet, path: "/test.txt",
			header: map[string]string{"Range": "bytes=0-9"},
			canonical: "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" +
				"x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n" +
				"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
				"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
		},
		{
			name: "PutObject", method: http.MethodPut, path: "/test$file.text",
			header: map[string]string{"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY"},
			body:   "Welcome to Amazon S3.",
			canonical: "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n" +
				"x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n" +
				"date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n" +
				"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class," +
				"Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
		},
		{
			name: "GetBucketLifecycle", method: http.MethodGet, path: "/", query: map[string]string{"lifecycle": ""},
			canonical: "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" +
				"x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n" +
				"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;x-amz-content-sha256;x-amz-date," +
				"Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
		},
		{
			name: "ListObjects", method: http.MethodGet, path: "/", query: map[string]string{"max-keys": "2", "prefix": "J"},
			canonical: "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" +
				"x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n" +
				"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;x-amz-content-sha256;x-amz-date," +
				"Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := &url.URL{Scheme: "https", Host: "examplebucket.s3.amazonaws.com", Path: tc.path, RawPath: encodePath(tc.path), RawQuery: canonicalQuery(tc.query)}
			req, err := http.NewRequest(tc.method, u.String(), strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.URL = u
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			payload := emptySHA256
			if tc.body != "" {
				payload = sha256Hex([]byte(tc.body))
			}
			signRequest(req, awsExampleCreds, "us-east-1", "s3", payload, awsExampleTime)
			if got := req.Header.Get("Authorization"); got != tc.want {
				t.Errorf("Authorization\n got %s\nwant %s", got, tc.want)
			}
			canonical, _ := canonicalRequest(req.Method, req.URL.EscapedPath(), req.URL.RawQuery, req.URL.Host, req.Header, payload)
			if canonical != tc.canonical {
				t.Errorf("canonical request\n got %q\nwant %q", canonical, tc.canonical)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20130524T000000Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
		})
	}
}

// TestSignSessionToken checks that a session token is sent and signed,
// and that signing again without one removes it.
func TestSignSessionToken(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodGet, "https://examplebucket.s3.amazonaws.com/test.txt", nil)
	c := awsExampleCreds
	c.sessionToken = "session-token"
	signRequest(req, c, "us-east-1", "s3", emptySHA256, awsExampleTime)
	if req.Header.Get("X-Amz-Security-Token") != "session-token" ||
		!strings.Contains(req.Header.Get("Authorization"), "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") {
		t.Fatalf("token not sent or not signed: %v", req.Header)
	}
	withToken := req.Header.Get("Authorization")
	signRequest(req, awsExampleCreds, "us-east-1", "s3", emptySHA256, awsExampleTime)
	if req.Header.Get("X-Amz-Security-Token") != "" || req.Header.Get("Authorization") == withToken {
		t.Fatalf("token kept after signing without it: %v", req.Header)
	}
	if strings.Contains(c.String()+c.GoString(), "session-token") || strings.Contains(c.String(), c.secretAccessKey) {
		t.Fatal("credentials format their secrets")
	}
}

// TestEncoding checks SigV4's URI encoding, and that the escaped path the
// HTTP client sends is the one signed, for keys with characters that
// url.URL escapes differently by default.
func TestEncoding(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/a/b.txt":         "/a/b.txt",
		"/a b+c":           "/a%20b%2Bc",
		"/x$&'()*,;=:@!":   "/x%24%26%27%28%29%2A%2C%3B%3D%3A%40%21",
		"/ü/~-_.":          "/%C3%BC/~-_.",
		"/p%41?q#r":        "/p%2541%3Fq%23r",
		"/000000010000000": "/000000010000000",
	} {
		if got := encodePath(in); got != want {
			t.Errorf("encodePath(%q) = %q, want %q", in, got, want)
		}
		u := &url.URL{Scheme: "https", Host: "h", Path: in, RawPath: encodePath(in)}
		req, err := http.NewRequest(http.MethodGet, "https://h/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL = u
		var buf bytes.Buffer
		if err := req.Write(&buf); err != nil {
			t.Fatal(err)
		}
		if line, _, _ := strings.Cut(buf.String(), "\r\n"); line != "GET "+want+" HTTP/1.1" {
			t.Errorf("request line for %q is %q, want the signed path %s", in, line, want)
		}
	}
	if got := uriEncode("a/b c", false); got != "a%2Fb%20c" {
		t.Errorf("query encoding = %q", got)
	}
	if got := canonicalQuery(map[string]string{"uploadId": "a+b/c=", "partNumber": "10", "uploads": ""}); got != "partNumber=10&uploadId=a%2Bb%2Fc%3D&uploads=" {
		t.Errorf("canonicalQuery = %q", got)
	}
	if got := canonicalQueryOf("uploads&prefix=a%2Fb&b=2&b=1"); got != "b=1&b=2&prefix=a%2Fb&uploads=" {
		t.Errorf("canonicalQueryOf = %q", got)
	}
}
