package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgsidecar/pgsidecar/compress"
)

// BenchmarkPush measures archive-push of a 16 MiB segment (70% of its pages
// used) to posix repositories in temporary directories, with lz4: reading,
// header check, SHA-1, compression, the listing and the upload (fsync
// included) to every repository. Each iteration pushes a new segment name;
// the stored copies are removed outside the timer.
func BenchmarkPush(b *testing.B) {
	data := makeSegment(1, testSysID, 0.7)
	for _, bc := range []struct {
		repos     int
		encrypted bool
	}{{1, false}, {1, true}, {4, false}, {4, true}} {
		name := fmt.Sprintf("repos=%d/cipher=none", bc.repos)
		if bc.encrypted {
			name = fmt.Sprintf("repos=%d/cipher=aes-256-cbc", bc.repos)
		}
		b.Run(name, func(b *testing.B) {
			var rs []*testRepo
			for i := range bc.repos {
				rs = append(rs, newTestRepo(b, fmt.Sprintf("repo%d", i+1), bc.encrypted, testCluster, nil))
			}
			p := newPusher(b, PushOptions{CompressType: compress.Lz4, CompressLevel: 1, HeaderCheck: true}, rs...)
			dir := b.TempDir()
			cur := writeFile(b, dir, "000000010000000000000000", data)
			ctx := b.Context()
			var stored int64
			b.SetBytes(segmentSize)
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				next := filepath.Join(dir, fmt.Sprintf("00000001%08X%08X", i>>8, i&0xFF+1))
				if err := os.Rename(cur, next); err != nil {
					b.Fatal(err)
				}
				cur = next
				for _, r := range rs {
					if err := os.RemoveAll(filepath.Join(r.dir, "archive/db/15-1")); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				res, err := p.Push(ctx, cur)
				if err != nil {
					b.Fatal(err)
				}
				stored = res.Stored
			}
			b.ReportMetric(float64(stored)/segmentSize, "ratio")
		})
	}
}
