package restore

import (
	"errors"
	"hash"
	"io"
)

// Pipelining of one file's download. A restore copies files process-max at a
// time, but one large relation segment (up to 1 GiB) is a serial chain of
// read, decrypt, decompress, SHA-1 and write on one core; it alone can
// decide how long the restore takes. pipeCopy splits the chain into three
// goroutines working on consecutive chunks, so that the file keeps up to
// three cores busy, with memory bounded by pipeChunks chunks.
//
// Chunks are small enough to stay in the CPU caches between the stages:
// with 1 MiB chunks each write(2) copied cold memory into the page cache
// and a 1.5 GB restore spent seconds more in the kernel (measured: 128 KiB
// chunks restore pgbench -s 100 in 3.2-3.7 s, 1 MiB ones in 4.1-6.9 s).
const (
	pipeChunkSize = 128 << 10
	pipeChunks    = 16
	// pipeMinSize is the smallest file worth the goroutines.
	pipeMinSize = 4 << 20
)

// pipeCopy copies src to w, feeding every byte to h before it is written,
// and returns the bytes copied. Reading (src: the repository, decryption
// and decompression), hashing and writing run concurrently on different
// chunks. The first error of any stage stops the others and is returned.
func pipeCopy(w io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	free := make(chan []byte, pipeChunks)
	for range pipeChunks {
		free <- make([]byte, pipeChunkSize)
	}
	toHash := make(chan []byte, pipeChunks)
	toWrite := make(chan []byte, pipeChunks)
	done := make(chan struct{}) // closed when the writer stops early
	readErr := make(chan error, 1)

	go func() { // read
		defer close(toHash)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				readErr <- nil
				return
			}
			n, err := io.ReadFull(src, buf)
			if n > 0 {
				select {
				case toHash <- buf[:n]:
				case <-done:
					readErr <- nil
					return
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				readErr <- nil
				return
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	go func() { // hash
		defer close(toWrite)
		for c := range toHash {
			h.Write(c)
			select {
			case toWrite <- c:
			case <-done:
				// Drain so that the reader is never blocked on toHash.
				for range toHash {
				}
				return
			}
		}
	}()

	var total int64
	var werr error
	for c := range toWrite { // write
		if werr == nil {
			var n int
			n, werr = w.Write(c)
			total += int64(n)
			if werr != nil {
				close(done)
			}
		}
		free <- c[:cap(c)]
	}
	rerr := <-readErr
	if werr != nil {
		return total, werr
	}
	return total, rerr
}
