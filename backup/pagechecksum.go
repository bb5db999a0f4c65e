package backup

import (
	"bytes"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
)

// PostgreSQL page layout constants (default build: 8 KiB pages, 1 GiB segments).
const (
	pageSize        = 8192
	segmentPages    = 131072 // RELSEG_SIZE: pages per relation segment file
	checksumNSums   = 32
	checksumFNV     = 16777619
	pdChecksumOff   = 8  // uint16 pd_checksum in PageHeaderData
	pdUpperOff      = 14 // uint16 pd_upper
	misalignMinimum = 512
)

// checksumBaseOffsets are the initial values of the 32 parallel FNV-1a-style sums of
// PostgreSQL's data page checksum (src/include/storage/checksum_impl.h).
var checksumBaseOffsets = [checksumNSums]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// PageChecksum returns PostgreSQL's checksum of an 8 KiB data page at absolute block
// number blockNo, computed with the page's pd_checksum field taken as zero. Words are
// read little-endian (the byte order of the platforms pgsidecar runs on).
func PageChecksum(page []byte, blockNo uint32) uint16 {
	p := (*[pageSize]byte)(page)
	sums := checksumBaseOffsets
	// The first row holds pd_checksum, taken as zero.
	var first [4 * checksumNSums]byte
	copy(first[:], p[:])
	first[pdChecksumOff], first[pdChecksumOff+1] = 0, 0
	checksumRow(&sums, &first)
	for off := 4 * checksumNSums; off < pageSize; off += 4 * checksumNSums {
		checksumRow(&sums, (*[4 * checksumNSums]byte)(p[off:]))
	}
	var zero [4 * checksumNSums]byte
	checksumRow(&sums, &zero)
	checksumRow(&sums, &zero)
	var c uint32
	for _, s := range sums {
		c ^= s
	}
	c ^= blockNo
	return uint16(c%65535 + 1)
}

// checksumRow mixes one row of 32 words into the 32 independent sums
// (PostgreSQL's CHECKSUM_COMP); fixed-size arrays keep the loop free of
// bounds checks and branches.
func checksumRow(sums *[checksumNSums]uint32, row *[4 * checksumNSums]byte) {
	for j := range checksumNSums {
		tmp := sums[j] ^ binary.LittleEndian.Uint32(row[4*j:])
		sums[j] = tmp*checksumFNV ^ tmp>>17
	}
}

// pageChecker verifies the page checksums of a relation file as it is copied (it is an
// io.Writer fed the file's bytes in order), as pgBackRest's pageChecksum filter does:
// all-zero new pages are valid; a page whose checksum fails is read again from the file
// and skipped if it changed meanwhile (PostgreSQL is writing it; WAL replay restores
// it); a trailing partial page marks the file misaligned.
type pageChecker struct {
	file    io.ReaderAt // re-read failed pages from here
	firstNo uint32      // block number of the file's first page
	buf     [pageSize]byte
	n       int    // bytes in buf
	pageNo  uint32 // pages seen
	errs    []uint32
}

// newPageChecker checks the pages of the relation segment file name ("16384",
// "16384.3", "16384_fsm.1").
func newPageChecker(file io.ReaderAt, name string) *pageChecker {
	seg := uint32(0)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if n, err := strconv.ParseUint(name[i+1:], 10, 32); err == nil {
			seg = uint32(n)
		}
	}
	return &pageChecker{file: file, firstNo: seg * segmentPages}
}

func (p *pageChecker) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		k := copy(p.buf[p.n:], b)
		p.n += k
		b = b[k:]
		if p.n == pageSize {
			p.check()
			p.n = 0
		}
	}
	return total, nil
}

// check verifies the full page in buf.
func (p *pageChecker) check() {
	idx := p.pageNo
	p.pageNo++
	page := p.buf[:]
	blockNo := p.firstNo + idx
	if binary.LittleEndian.Uint16(page[pdUpperOff:]) == 0 {
		if allZero(page) {
			return // a new page
		}
		// pd_upper is corrupt: the checksum is not computed, the page is re-read.
	} else if binary.LittleEndian.Uint16(page[pdChecksumOff:]) == PageChecksum(page, blockNo) {
		return
	}
	if p.file != nil {
		again := make([]byte, pageSize)
		if n, err := p.file.ReadAt(again, int64(idx)*pageSize); n == pageSize || err == nil {
			if !bytes.Equal(again[:n], page) {
				return // changed since read: being written by PostgreSQL
			}
		}
	}
	p.errs = append(p.errs, blockNo)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// result returns the manifest's checksum-page values: error is true when pages failed
// or the file is misaligned (size not a multiple of the page size); list is the JSON
// error list of page numbers and [first,last] ranges ("" when misaligned or valid).
func (p *pageChecker) result() (pageError bool, list string) {
	if p.n != 0 {
		return true, ""
	}
	if len(p.errs) == 0 {
		return false, ""
	}
	return true, pageErrorList(p.errs)
}

// pageErrorList renders ascending page numbers as pgBackRest does: consecutive pages
// collapse to [first,last].
func pageErrorList(pages []uint32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(pages); {
		j := i
		for j+1 < len(pages) && pages[j+1] == pages[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		if j == i {
			b.WriteString(strconv.FormatUint(uint64(pages[i]), 10))
		} else {
			b.WriteString("[" + strconv.FormatUint(uint64(pages[i]), 10) + "," + strconv.FormatUint(uint64(pages[j]), 10) + "]")
		}
		i = j + 1
	}
	b.WriteByte(']')
	return b.String()
}
