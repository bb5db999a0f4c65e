package gcs

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// putIDKey is the custom metadata entry in which PutIfAbsent records a random
// id, so that a create whose response was lost and whose retry then hit
// "precondition failed" can recognise its own object.
const putIDKey = "pgsidecar-put-id"

// contentType is the content type of every object.
const contentType = "application/octet-stream"

// uploadAttempts bounds the attempts at one upload request (the start of a
// session, a chunk, a single-request upload). Uploads are retried here
// because the caller may be unable to replay its stream.
const uploadAttempts = 4

// objectFields are the fields of the object resource an upload reads back.
const objectFields = "name,size,crc32c,generation"

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if _, err := s.upload(ctx, name, r, ""); err != nil {
		return fmt.Errorf("put %s: %w", key, translate(err))
	}
	return nil
}

// PutIfAbsent implements storage.Store with ifGenerationMatch=0. Each call
// tags its object with a random id; when a retried create fails with
// "precondition failed" and the existing object carries the call's own id
// (an earlier attempt succeeded but its response was lost), the call
// succeeded.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	id := randomHex(16)
	retried, err := s.upload(ctx, name, r, id)
	if err != nil && retried && hasStatus(err, http.StatusPreconditionFailed) {
		if o, aerr := s.attrs(ctx, name, "metadata"); aerr == nil && o.Metadata[putIDKey] == id {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, translate(err))
	}
	return nil
}

// uploader is one upload in progress.
type uploader struct {
	s       *Store
	name    string
	id      string // PutIfAbsent's id; "" for Put
	crc     uint32 // CRC32C of the bytes read so far
	retried bool   // some request was sent more than once
}

// upload stores r as object name; id != "" makes it a conditional create
// tagged with id. It reports whether any request was retried.
func (s *Store) upload(ctx context.Context, name string, r io.Reader, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	u := &uploader{s: s, name: name, id: id}
	buf, err := fill(r, make([]byte, 0, min(s.chunkSize, 64<<10)), s.chunkSize)
	if err != nil {
		return false, err
	}
	var more bool
	if len(buf) == s.chunkSize {
		var carry byte
		if more, err = peek(r, &carry); err != nil {
			return false, err
		}
		if more {
			err = u.resumable(ctx, r, buf, carry)
			return u.retried, err
		}
	}
	err = u.single(ctx, buf)
	return u.retried, err
}

// fill appends bytes of r to buf until it holds limit bytes or r ends,
// growing buf by doubling so that a small object needs little memory.
func fill(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(limit, max(2*cap(buf), 64<<10)))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("read source: %w", err)
		}
	}
	return buf, nil
}

// peek reads one byte of r into b and reports whether there was one.
func peek(r io.Reader, b *byte) (bool, error) {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n == 1 {
			*b = one[0]
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read source: %w", err)
		}
	}
}

// resource returns the JSON object resource an upload starts with.
func (u *uploader) resource(crc32c string) []byte {
	res := struct {
		Name        string            `json:"name"`
		ContentType string            `json:"contentType"`
		CRC32C      string            `json:"crc32c,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
	}{Name: u.name, ContentType: contentType, CRC32C: crc32c}
	if u.id != "" {
		res.Metadata = map[string]string{putIDKey: u.id}
	}
	b, err := json.Marshal(res)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return b
}

// uploadQuery is the query of the request that starts an upload.
func (u *uploader) uploadQuery(uploadType string) url.Values {
	q := url.Values{"uploadType": {uploadType}, "fields": {objectFields}}
	if u.id != "" {
		q.Set("ifGenerationMatch", "0")
	}
	return q
}

// crcString is the base64 big-endian form of a CRC32C, as GCS writes it.
func crcString(crc uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc)
	return base64.StdEncoding.EncodeToString(b[:])
}

// single uploads data in one multipart request whose resource carries the
// CRC32C, which the service checks before it commits the object.
func (u *uploader) single(ctx context.Context, data []byte) error {
	u.crc = crc32.Update(u.crc, u.s.crcTable, data)
	boundary := randomHex(16)
	for bytes.Contains(data, []byte(boundary)) {
		boundary = randomHex(16)
	}
	head := "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
	mid := "\r\n--" + boundary + "\r\nContent-Type: " + contentType + "\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	req := request{
		method: http.MethodPost,
		url:    u.s.uploadBase + u.s.query(u.uploadQuery("multipart")),
		object: u.name,
		header: http.Header{"Content-Type": {"multipart/related; boundary=" + boundary}},
		body:   [][]byte{[]byte(head), u.resource(crcString(u.crc)), []byte(mid), data, []byte(tail)},
	}
	var o *object
	err := u.retry(ctx, func() (bool, error) {
		resp, err := u.s.do(ctx, req)
		if err != nil {
			return transient(ctx, err), err
		}
		if resp.StatusCode != http.StatusOK {
			return retryableStatus(resp.StatusCode), u.s.failure(req, resp)
		}
		// An answer that breaks now was lost after the commit: sending again
		// overwrites with the same bytes, or meets the precondition, which
		// PutIfAbsent resolves with its id.
		o, err = u.s.decodeObject(req, resp)
		return true, err
	})
	if err != nil {
		return err
	}
	return u.verify(ctx, o, int64(len(data)))
}

// resumable uploads buf, carry and the rest of r in a resumable upload
// session; buf holds exactly one chunk. The session is cancelled unless its
// last chunk commits the object.
func (u *uploader) resumable(ctx context.Context, r io.Reader, buf []byte, carry byte) (err error) {
	session, err := u.start(ctx)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			u.cancel(ctx, session)
		}
	}()
	var offset int64
	for {
		// buf is one full chunk and more bytes follow: carry, then r.
		u.crc = crc32.Update(u.crc, u.s.crcTable, buf)
		if _, err := u.chunk(ctx, session, buf, offset, false); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // the transport may still hold buf
		}
		offset += int64(len(buf))
		if buf, err = fill(r, append(buf[:0], carry), u.s.chunkSize); err != nil {
			return err
		}
		if len(buf) < u.s.chunkSize {
			break
		}
		more, err := peek(r, &carry)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	u.crc = crc32.Update(u.crc, u.s.crcTable, buf)
	o, err := u.chunk(ctx, session, buf, offset, true)
	if err != nil {
		return err
	}
	committed = true
	return u.verify(ctx, o, offset+int64(len(buf)))
}

// start opens a resumable upload session and returns its URL, which
// addresses the configured endpoint like every other request.
func (u *uploader) start(ctx context.Context) (string, error) {
	req := request{
		method: http.MethodPost,
		url:    u.s.uploadBase + u.s.query(u.uploadQuery("resumable")),
		object: u.name,
		header: http.Header{
			"Content-Type":          {"application/json; charset=UTF-8"},
			"X-Upload-Content-Type": {contentType},
		},
		body: [][]byte{u.resource("")},
	}
	var id string
	err := u.retry(ctx, func() (bool, error) {
		resp, err := u.s.do(ctx, req)
		if err != nil {
			return transient(ctx, err), err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			return retryableStatus(resp.StatusCode), u.s.failure(req, resp)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if loc, err := url.Parse(resp.Header.Get("Location")); err == nil {
			id = loc.Query().Get("upload_id")
		}
		if id == "" {
			id = resp.Header.Get("X-GUploader-UploadID")
		}
		if id == "" {
			return false, fmt.Errorf("gcs POST bucket %q object %q: the service started an upload session without an id", u.s.bucket, u.name)
		}
		return false, nil
	})
	if err != nil {
		return "", err
	}
	return u.s.uploadBase + u.s.query(url.Values{"uploadType": {"resumable"}, "upload_id": {id}}), nil
}

// chunk sends buf, the bytes of the object from offset on, to the session.
// When final, the request declares the object's size, which commits it,
// and chunk returns the object. A chunk that the service persists only in
// part is completed. After a failure the bytes the service has not
// acknowledged are sent again with the same Content-Range, as Google's
// client libraries do: the service ignores the bytes it already has.
func (u *uploader) chunk(ctx context.Context, session string, buf []byte, offset int64, final bool) (*object, error) {
	end := offset + int64(len(buf))
	pos := offset // the first byte the service has not acknowledged
	failures := 0
	for {
		o, persisted, err := u.put(ctx, session, buf[pos-offset:], pos, end, final)
		if err == nil {
			switch {
			case o != nil && final:
				return o, nil
			case o != nil:
				return nil, fmt.Errorf("gcs PUT bucket %q object %q: the service committed the upload before its last chunk", u.s.bucket, u.name)
			case persisted < offset || persisted > end:
				return nil, fmt.Errorf("gcs PUT bucket %q object %q: the service reports %d bytes persisted, outside the chunk %d-%d",
					u.s.bucket, u.name, persisted, offset, end)
			case persisted == end && !final:
				return nil, nil
			case persisted > pos:
				pos = persisted
				continue
			}
			err = fmt.Errorf("gcs PUT bucket %q object %q: the service persisted %d bytes, no more than before", u.s.bucket, u.name, persisted)
			pos = persisted
		}
		if failures++; failures >= uploadAttempts || !transient(ctx, err) {
			return nil, err
		}
		u.retried = true
		if err := sleep(ctx, failures); err != nil {
			return nil, err
		}
	}
}

// put sends body, the bytes from pos on, to the session (no bytes, when the
// service has all of them, asks it to commit). It returns the object when the upload is
// committed, else how many bytes the service has persisted.
func (u *uploader) put(ctx context.Context, session string, body []byte, pos, end int64, final bool) (*object, int64, error) {
	total := "*"
	if final {
		total = strconv.FormatInt(end, 10)
	}
	h := http.Header{"Content-Range": {"bytes */" + total}}
	if len(body) > 0 {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%s", pos, pos+int64(len(body))-1, total))
	}
	req := request{method: http.MethodPut, url: session, object: u.name, header: h, body: [][]byte{body}, session: true}
	resp, err := u.s.do(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusPermanentRedirect: // "resume incomplete"
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		n, err := persistedBytes(resp.Header.Get("Range"))
		if err != nil {
			return nil, 0, fmt.Errorf("gcs PUT bucket %q object %q: %w", u.s.bucket, u.name, err)
		}
		return nil, n, nil
	case http.StatusOK, http.StatusCreated:
		o, err := u.s.decodeObject(req, resp)
		if err != nil {
			return nil, 0, err
		}
		return o, o.Size, nil
	}
	return nil, 0, u.s.failure(req, resp)
}

// persistedBytes parses the Range header of a "resume incomplete" answer,
// "bytes=0-N", into N+1; no header means no bytes.
func persistedBytes(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	r, ok := strings.CutPrefix(h, "bytes=0-")
	n, err := strconv.ParseInt(r, 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("the service answered with the unexpected Range %q", h)
	}
	return n + 1, nil
}

// cancel ends an unfinished session so that the service drops its bytes. It
// is best effort, also after ctx is cancelled: an abandoned session expires
// anyway and never becomes an object.
func (u *uploader) cancel(ctx context.Context, session string) {
	cctx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	resp, err := u.s.do(cctx, request{method: http.MethodDelete, url: session, object: u.name, body: [][]byte{}, session: true})
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}
}

// verify checks the size and CRC32C the service reports for the object it
// committed. An object that does not hold what was sent is removed (if it
// is still that generation) and reported.
func (u *uploader) verify(ctx context.Context, o *object, size int64) error {
	var problem string
	switch {
	case o.Size != size:
		problem = fmt.Sprintf("size %d, sent %d bytes", o.Size, size)
	case o.CRC32C != "" && o.CRC32C != crcString(u.crc):
		problem = fmt.Sprintf("crc32c %s, sent %s", o.CRC32C, crcString(u.crc))
	default:
		return nil
	}
	if o.Generation != 0 {
		_ = u.s.delete(ctx, u.name, u.name, o.Generation)
	}
	return fmt.Errorf("gcs bucket %q object %q: the service stored %s", u.s.bucket, u.name, problem)
}

// retry runs op until it succeeds, fails for good (op reports whether its
// error may pass), or uploadAttempts are spent.
func (u *uploader) retry(ctx context.Context, op func() (bool, error)) error {
	for attempt := 1; ; attempt++ {
		again, err := op()
		if err == nil || !again || attempt >= uploadAttempts || ctx.Err() != nil {
			return err
		}
		u.retried = true
		if serr := sleep(ctx, attempt); serr != nil {
			return fmt.Errorf("%w (after: %w)", serr, err)
		}
	}
}

// transient reports whether err, from a request sent under ctx, may pass
// on another attempt: a service answer that says so, or a network failure
// while ctx is still live.
func transient(ctx context.Context, err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return retryableStatus(ae.status)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return false // the same certificate comes back
	}
	return ctx.Err() == nil && !storage.Permanent(err)
}

// sleep waits before attempt+1: 250ms, 1s, 4s, ... up to 8s, with jitter.
func sleep(ctx context.Context, attempt int) error {
	return storage.Backoff(ctx, min(250*time.Millisecond<<(2*(attempt-1)), 8*time.Second))
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = cryptorand.Read(b)
	return hex.EncodeToString(b)
}
