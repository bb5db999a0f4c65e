package compress

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// gzOSUnix is the gzip header OS byte zlib writes on Unix, and so pgBackRest.
const gzOSUnix = 3

// gzWriter writes one gzip member.
type gzWriter struct {
	z      *gzip.Writer
	closed bool
}

func newGzWriter(w io.Writer, level int) (*gzWriter, error) {
	if level == -1 {
		// zlib's Z_DEFAULT_COMPRESSION is level 6; klauspost's is 5.
		level = 6
	}
	z, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return nil, fmt.Errorf("create gz compressor: %w", err)
	}
	z.OS = gzOSUnix
	return &gzWriter{z: z}, nil
}

func (g *gzWriter) Write(p []byte) (int, error) {
	if g.closed {
		return 0, errWriteClosed
	}
	n, err := g.z.Write(p)
	if err != nil {
		return n, fmt.Errorf("compress gz: %w", err)
	}
	return n, nil
}

func (g *gzWriter) Close() error {
	if g.closed {
		return nil
	}
	if err := g.z.Close(); err != nil {
		return fmt.Errorf("compress gz: %w", err)
	}
	g.closed = true
	return nil
}

func (g *gzWriter) Reset(w io.Writer) {
	g.z.Reset(w)
	g.z.OS = gzOSUnix
	g.closed = false
}

// lz4Writer writes one LZ4 frame.
type lz4Writer struct {
	z      *lz4.Writer
	closed bool
}

// lz4Level maps a pgBackRest (LZ4F) level onto pierrec/lz4's levels: LZ4F
// uses its fast compressor below LZ4HC_CLEVEL_MIN (3), with negative levels
// as acceleration, and the HC compressor from 3 to 12.
func lz4Level(level int) lz4.CompressionLevel {
	hc := []lz4.CompressionLevel{
		lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5,
		lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9,
	}
	if level < 3 {
		return lz4.Fast
	}
	return hc[min(level-3, len(hc)-1)]
}

func newLz4Writer(w io.Writer, level int) (*lz4Writer, error) {
	z := lz4.NewWriter(w)
	err := z.Apply(
		lz4.BlockSizeOption(lz4.Block64Kb), // LZ4F default max64KB, as pgBackRest
		lz4.ChecksumOption(true),           // content checksum, as pgBackRest (non-raw)
		lz4.BlockChecksumOption(false),
		lz4.ConcurrencyOption(1),
		lz4.CompressionLevelOption(lz4Level(level)),
	)
	if err != nil {
		return nil, fmt.Errorf("create lz4 compressor: %w", err)
	}
	return &lz4Writer{z: z}, nil
}

func (l *lz4Writer) Write(p []byte) (int, error) {
	if l.closed {
		return 0, errWriteClosed
	}
	n, err := l.z.Write(p)
	if err != nil {
		return n, fmt.Errorf("compress lz4: %w", err)
	}
	return n, nil
}

func (l *lz4Writer) Close() error {
	if l.closed {
		return nil
	}
	if err := l.z.Close(); err != nil {
		return fmt.Errorf("compress lz4: %w", err)
	}
	l.closed = true
	return nil
}

func (l *lz4Writer) Reset(w io.Writer) {
	l.z.Reset(w)
	l.closed = false
}

// zstWriter writes one zstd frame.
type zstWriter struct {
	z      *zstd.Encoder
	closed bool
}

// zstdWindow is the window the reference zstd uses at level for input of
// unknown size (windowLog 19 at level 1 up to 23 from level 10; see
// ZSTD_defaultCParameters): the history each encoder keeps, so process-max
// encoders at pgBackRest's default level 3 hold 2 MiB each, not 8.
func zstdWindow(level int) int {
	switch {
	case level <= 1:
		return 512 << 10
	case level == 2:
		return 1 << 20
	case level <= 4:
		return 2 << 20
	case level <= 9:
		return 4 << 20
	}
	return 8 << 20
}

func newZstWriter(w io.Writer, level int) (*zstWriter, error) {
	z, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1), // synchronous, one window of memory
		zstd.WithWindowSize(zstdWindow(level)),
		zstd.WithEncoderCRC(false), // ZSTD_compressStream default: no checksum
		zstd.WithZeroFrames(true),  // empty input still gives a valid frame
	)
	if err != nil {
		return nil, fmt.Errorf("create zstd compressor: %w", err)
	}
	return &zstWriter{z: z}, nil
}

func (z *zstWriter) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errWriteClosed
	}
	n, err := z.z.Write(p)
	if err != nil {
		return n, fmt.Errorf("compress zst: %w", err)
	}
	return n, nil
}

func (z *zstWriter) Close() error {
	if z.closed {
		return nil
	}
	if err := z.z.Close(); err != nil {
		return fmt.Errorf("compress zst: %w", err)
	}
	z.closed = true
	return nil
}

func (z *zstWriter) Reset(w io.Writer) {
	z.z.Reset(w)
	z.closed = false
}
