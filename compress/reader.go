package compress

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

const (
	// zstdMaxWindow is the largest zstd window accepted on read: 128 MiB,
	// the window of zstd level 22 (windowLog 27), the highest level
	// pgBackRest allows. Frames asking for more are rejected rather than
	// allocated.
	zstdMaxWindow = 1 << 27
	// readBufSize is the read-ahead buffer for the gz and bz2 decoders,
	// which need an io.ByteReader.
	readBufSize = 32 << 10
)

// countReader counts the bytes read through it, so that an empty stream can
// be told from a complete one.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// reader is the Reader for every type but None. Codec state is created on
// the first Read after a Reset, so that Reset performs no I/O, and kept for
// reuse.
type reader struct {
	t       Type
	src     countReader
	br      *bufio.Reader // over &src, for gz and bz2
	started bool          // the codec has been attached to src
	closed  bool
	err     error // sticky

	gz  *gzip.Reader
	lz  *lz4.Reader
	zs  *zstd.Decoder
	bz2 io.Reader
}

// Reset implements Reader.
func (d *reader) Reset(r io.Reader) error {
	d.src = countReader{r: r}
	d.started, d.closed, d.err = false, false, nil
	if d.t == Gz || d.t == Bz2 {
		if d.br == nil {
			d.br = bufio.NewReaderSize(&d.src, readBufSize)
		} else {
			d.br.Reset(&d.src)
		}
	}
	return nil
}

// Read implements Reader.
func (d *reader) Read(p []byte) (int, error) {
	if d.closed {
		return 0, errReadClosed
	}
	if d.err != nil {
		return 0, d.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := d.read(p)
	if err != nil {
		d.err = d.wrap(err)
	}
	return n, d.err
}

// read attaches the codec on first use and reads from it.
func (d *reader) read(p []byte) (int, error) {
	if !d.started {
		if err := d.start(); err != nil {
			return 0, err
		}
		d.started = true
	}
	switch d.t {
	case Gz:
		return d.gz.Read(p)
	case Lz4:
		return d.lz.Read(p)
	case Zst:
		return d.zs.Read(p)
	default:
		return d.bz2.Read(p)
	}
}

// start attaches the codec to src. For gz and zst this reads the stream
// header.
func (d *reader) start() error {
	switch d.t {
	case Gz:
		if d.gz == nil {
			d.gz = new(gzip.Reader)
		}
		// Reset reads the gzip header; multistream (the default) accepts
		// concatenated members as gzip -d does.
		return d.gz.Reset(d.br)
	case Lz4:
		if d.lz == nil {
			d.lz = lz4.NewReader(&d.src)
			return d.lz.Apply(lz4.ConcurrencyOption(1))
		}
		d.lz.Reset(&d.src)
		return nil
	case Zst:
		if d.zs == nil {
			zs, err := zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxWindow(zstdMaxWindow))
			if err != nil {
				return fmt.Errorf("create zstd decoder: %w", err)
			}
			d.zs = zs
		}
		return d.zs.Reset(&d.src)
	default:
		d.bz2 = bzip2.NewReader(d.br)
		return nil
	}
}

// wrap turns a codec error into the Reader's error: io.EOF stays io.EOF
// unless nothing was read at all, anything else gets the type as context.
func (d *reader) wrap(err error) error {
	if err == io.EOF {
		if d.src.n == 0 {
			return fmt.Errorf("decompress %s: empty input: %w", d.t, io.ErrUnexpectedEOF)
		}
		return io.EOF
	}
	if errors.Is(err, io.EOF) {
		// A codec reporting a wrapped EOF mid-stream means truncation.
		return fmt.Errorf("decompress %s: %w: %w", d.t, io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("decompress %s: %w", d.t, err)
}

// Close implements Reader.
func (d *reader) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	switch d.t {
	case Lz4:
		if d.lz != nil {
			d.lz.Reset(nil) // returns the block buffers to lz4's pool
		}
	case Zst:
		if d.zs != nil {
			d.zs.Close()
			d.zs = nil
		}
	case Bz2:
		d.bz2 = nil
	}
	d.src = countReader{}
	if d.br != nil {
		d.br.Reset(&d.src)
	}
	return nil
}
