package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// SegmentRange returns the WAL segment names from start to stop inclusive, on start's
// timeline, for segments of segSize bytes.
func SegmentRange(start, stop string, segSize uint64) ([]string, error) {
	tli, log, seg, err := repo.ParseWALSegment(start)
	if err != nil {
		return nil, err
	}
	_, stopLog, stopSeg, err := repo.ParseWALSegment(stop)
	if err != nil {
		return nil, err
	}
	if segSize == 0 || (1<<32)%segSize != 0 {
		return nil, fmt.Errorf("invalid WAL segment size %d", segSize)
	}
	perLog := uint32((1 << 32) / segSize)
	if uint64(stopLog)<<32|uint64(stopSeg) < uint64(log)<<32|uint64(seg) {
		return nil, fmt.Errorf("WAL stop segment %s is before start segment %s", stop, start)
	}
	var out []string
	for {
		out = append(out, fmt.Sprintf("%08X%08X%08X", tli, log, seg))
		if log == stopLog && seg == stopSeg {
			return out, nil
		}
		if seg++; seg >= perLog {
			log, seg = log+1, 0
		}
	}
}

// waitArchived waits up to timeout for every segment from start to stop to be in the
// repository's archive (archive/<stanza>/<archiveID>/<16>/<segment>-<sha1>[ext]).
func waitArchived(ctx context.Context, rs *repo.Repository, archiveID, start, stop string, segSize uint64, timeout time.Duration, log *zap.Logger) error {
	segments, err := SegmentRange(start, stop, segSize)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	errFound := errors.New("found")
	for _, seg := range segments {
		prefix := rs.ArchiveKey(repo.ArchivePath(archiveID, seg)) + "-"
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			err := rs.Store().List(ctx, prefix, func(oi storage.ObjectInfo) error {
				if strings.HasPrefix(oi.Key, prefix) {
					return errFound
				}
				return nil
			})
			if errors.Is(err, errFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("check archive for %s: %w", seg, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: %s was not archived to %s within %v (check that archive_command pushes to this repository)",
					ErrArchiveTimeout, seg, rs.Name(), timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
		}
	}
	log.Info("WAL segments archived", zap.String("start", start), zap.String("stop", stop))
	return nil
}
