package s3

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Retries of a conditional write that S3 refused with 409
// ConditionalRequestConflict because another conditional write of the same
// key was in progress: short, jittered, growing waits.
const (
	conflictAttempts = 8
	conflictBackoff  = 50 * time.Millisecond
	abortTimeout     = time.Minute
)

// Put implements storage.Store. Input that fits one part is stored with a
// single PutObject; longer input with a multipart upload of PartSize parts,
// Concurrency of them in flight, that is aborted on failure or cancellation.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, key, r, false)
}

// PutIfAbsent implements storage.Store with If-None-Match: * on the request
// that makes the object visible (PutObject or CompleteMultipartUpload). S3
// answers 412 when the key exists, which becomes storage.ErrExist; a 409
// from a concurrent conditional write is retried until one writer has won.
// A HeadObject first skips the upload when the key already exists.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, key, r, true)
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	k, err := s.objectKey(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ifAbsent {
		// Not race-free (the conditional request is), but it spares
		// uploading an object that cannot be stored. Without s3:ListBucket
		// a missing key answers 403, so a permission error is not final.
		_, err := s.Stat(ctx, key)
		switch {
		case err == nil:
			return fmt.Errorf("put %s: %w", key, storage.ErrExist)
		case !errors.Is(err, storage.ErrNotExist) && !errors.Is(err, storage.ErrPermission):
			return err
		}
	}

	first := s.getBuffer()
	n, eof, err := readFull(ctx, r, *first)
	if err != nil {
		s.putBuffer(first)
		return fmt.Errorf("read %s: %w", key, err)
	}
	if !eof {
		// The first part is full: peek one byte to learn whether the
		// input ends here and still fits a single request.
		var one [1]byte
		m, _, err := readFull(ctx, r, one[:])
		if err != nil {
			s.putBuffer(first)
			return fmt.Errorf("read %s: %w", key, err)
		}
		if m > 0 {
			return s.putMultipart(ctx, key, k, first, io.MultiReader(bytes.NewReader(one[:]), r), ifAbsent)
		}
	}
	if err := s.putObject(ctx, key, k, (*first)[:n], ifAbsent); err != nil {
		// The transport may still read a failed request's body: let the
		// buffer go to the garbage collector instead of reusing it.
		return err
	}
	s.putBuffer(first)
	return nil
}

// putObject stores data with one PutObject.
func (s *Store) putObject(ctx context.Context, key, k string, data []byte, ifAbsent bool) error {
	h := s.sseHeader()
	if ifAbsent {
		h.Set("If-None-Match", "*")
	}
	for attempt := 1; ; attempt++ {
		err := withRetries(ctx, func() error {
			resp, err := s.do(ctx, request{method: http.MethodPut, key: k, header: h, body: data})
			if err == nil {
				discard(resp)
			}
			return err
		})
		if err == nil {
			return nil
		}
		if ifAbsent && isConflict(err) && attempt < conflictAttempts {
			if werr := sleep(ctx, attempt); werr != nil {
				return fmt.Errorf("put %s: %w", key, werr)
			}
			continue
		}
		return s.translate("put", key, err)
	}
}

// sseHeader returns the headers that ask for SSE-KMS under
// repoN-s3-kms-key-id, or an empty header.
func (s *Store) sseHeader() http.Header {
	h := http.Header{}
	if s.kmsKeyID != "" {
		h.Set("X-Amz-Server-Side-Encryption", "aws:kms")
		h.Set("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id", s.kmsKeyID)
	}
	return h
}

// completedPart is one part of a CompleteMultipartUpload request.
type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

// completeUpload is the body of a CompleteMultipartUpload request.
type completeUpload struct {
	XMLName xml.Name         `xml:"CompleteMultipartUpload"`
	Parts   []*completedPart `xml:"Part"`
}

// putMultipart uploads first (a full part) and the rest of r as a
// multipart upload. At most s.concurrency part buffers exist at once: the
// reader waits for a finished part's buffer before reading the next part.
func (s *Store) putMultipart(ctx context.Context, key, k string, first *[]byte, rest io.Reader, ifAbsent bool) (err error) {
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	err = withRetries(ctx, func() error {
		return s.getXML(ctx, request{method: http.MethodPost, key: k, query: map[string]string{"uploads": ""}, header: s.sseHeader()}, &created)
	})
	if err == nil && created.UploadID == "" {
		err = errors.New("CreateMultipartUpload answered no upload id")
	}
	if err != nil {
		s.putBuffer(first)
		return s.translate("start multipart upload of", key, err)
	}
	uploadID := created.UploadID
	defer func() {
		if err != nil {
			if aerr := s.abort(ctx, k, uploadID); aerr != nil {
				err = fmt.Errorf("%w (abort of the multipart upload failed too: %v)", err, aerr)
			}
		}
	}()

	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(upCtx)
	free := make(chan *[]byte, s.concurrency)
	allocated := 1
	acquire := func() (*[]byte, error) {
		select {
		case b := <-free:
			return b, nil
		default:
		}
		if allocated < s.concurrency {
			allocated++
			return s.getBuffer(), nil
		}
		select {
		case b := <-free:
			return b, nil
		case <-gctx.Done():
			return nil, gctx.Err()
		}
	}

	var (
		parts   []*completedPart
		total   int64 // bytes in all parts
		readErr error
		buf     = first
		n       = len(*first)
		eof     = false
	)
	for num := 1; ; num++ {
		if num > MaxParts {
			readErr = fmt.Errorf("object is larger than %d parts of %d bytes (raise repo-storage-upload-chunk-size): %w", MaxParts, s.partSize, storage.ErrInvalid)
			break
		}
		part := &completedPart{PartNumber: num}
		parts = append(parts, part)
		b, size := buf, n
		total += int64(n)
		g.Go(func() error {
			err := withRetries(gctx, func() error {
				resp, err := s.do(gctx, request{
					method: http.MethodPut, key: k, body: (*b)[:size],
					query: map[string]string{"partNumber": strconv.Itoa(part.PartNumber), "uploadId": uploadID},
				})
				if err != nil {
					return err
				}
				discard(resp)
				if part.ETag = resp.Header.Get("ETag"); part.ETag == "" {
					return errors.New("the answer has no ETag")
				}
				return nil
			})
			if err != nil {
				return s.translate(fmt.Sprintf("upload part %d of", part.PartNumber), key, err)
			}
			free <- b // never blocks: at most s.concurrency buffers exist
			return nil
		})
		if eof {
			break
		}
		if buf, readErr = acquire(); readErr != nil {
			break
		}
		if n, eof, readErr = readFull(gctx, rest, *buf); readErr != nil {
			readErr = fmt.Errorf("read %s: %w", key, readErr)
			break
		}
		if n == 0 { // the input ended exactly at a part boundary
			free <- buf
			break
		}
	}
	if readErr != nil {
		cancel()
	}
	werr := g.Wait()
	switch {
	case readErr != nil && werr != nil && ctx.Err() == nil && errors.Is(readErr, context.Canceled):
		return werr // the read stopped because a part failed
	case readErr != nil:
		return readErr
	case werr != nil:
		return werr
	}

	body, err := xml.Marshal(completeUpload{Parts: parts})
	if err != nil {
		return fmt.Errorf("complete multipart upload of %s: %w", key, err)
	}
	h := http.Header{}
	if ifAbsent {
		h.Set("If-None-Match", "*")
	}
	complete := request{method: http.MethodPost, key: k, query: map[string]string{"uploadId": uploadID}, header: h, body: body, hashBody: true}
	for attempt := 1; ; attempt++ {
		var done struct {
			ETag string `xml:"ETag"`
		}
		failed := false
		err := withRetries(ctx, func() error {
			err := s.getXML(ctx, complete, &done)
			if code, _ := errorCode(err); failed && code == codeNoSuchUpload {
				// An attempt that seemed to fail (its answer was lost)
				// completed the upload; the object is there.
				if info, serr := s.Stat(ctx, key); serr == nil && info.Size == total {
					return nil
				}
			}
			failed = err != nil
			return err
		})
		if err == nil {
			break
		}
		if !ifAbsent || !isConflict(err) || attempt >= conflictAttempts {
			return s.translate("complete multipart upload of", key, err)
		}
		// S3 advises a new upload after a 409 here, which a stream cannot
		// replay. The concurrent writer has most likely won by now; if
		// not, try completing this upload again.
		if werr := sleep(ctx, attempt); werr != nil {
			return fmt.Errorf("complete multipart upload of %s: %w", key, werr)
		}
		if _, serr := s.Stat(ctx, key); serr == nil {
			return fmt.Errorf("complete multipart upload of %s: %w: %w", key, storage.ErrExist, err)
		} else if !errors.Is(serr, storage.ErrNotExist) {
			return serr
		}
	}
	close(free)
	for b := range free {
		s.putBuffer(b)
	}
	return nil
}

// abort aborts a multipart upload so that its parts are deleted; it runs
// even when ctx is cancelled, bounded by abortTimeout.
func (s *Store) abort(ctx context.Context, k, uploadID string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	err := withRetries(actx, func() error {
		resp, err := s.do(actx, request{method: http.MethodDelete, key: k, query: map[string]string{"uploadId": uploadID}})
		if err == nil {
			discard(resp)
		}
		return err
	})
	if err != nil {
		if code, _ := errorCode(err); code == codeNoSuchUpload {
			return nil
		}
		return err
	}
	return nil
}

// isConflict reports a 409 answer to a conditional write.
func isConflict(err error) bool {
	code, status := errorCode(err)
	return code == codeConditionalConflict || status == http.StatusConflict
}

// sleep waits before conflict retry attempt (1-based), with jitter so that
// racing writers spread out; it returns early with ctx's error.
func sleep(ctx context.Context, attempt int) error {
	return storage.Backoff(ctx, conflictBackoff<<(attempt-1))
}

// readFull reads from r until p is full or r ends, checking ctx before
// every read. eof reports that r ended; err is nil at the end of r.
func readFull(ctx context.Context, r io.Reader, p []byte) (n int, eof bool, err error) {
	for n < len(p) {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		m, err := r.Read(p[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// getBuffer returns a part buffer of s.partSize bytes.
func (s *Store) getBuffer() *[]byte {
	if b, ok := s.buffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, s.partSize)
	return &b
}

// putBuffer returns a part buffer no request reads any more to the pool.
func (s *Store) putBuffer(b *[]byte) { s.buffers.Put(b) }
