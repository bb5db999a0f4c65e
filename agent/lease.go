package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/scheduler"
	"github.com/pgsidecar/pgsidecar/storage"
)

// LeaseFile is the name of the backup lease object under backup/<stanza>/. Stock
// pgBackRest (info, verify, expire) and pgsidecar's expire only look at
// backup.info, its copy, backup.history and label-named directories there, so
// the file is ignored by them.
const LeaseFile = "pgsidecar.lease"

// Lease timing defaults.
const (
	defaultLeaseTTL   = 5 * time.Minute
	defaultLeaseRetry = 30 * time.Second
)

// ErrLeaseLost reports that another agent took the backup lease while a backup
// held it (our renewals failed for longer than the lease's time to live, or an
// agent that judged it expired took it over). The backup is cancelled.
var ErrLeaseLost = errors.New("backup lease lost to another agent")

// LeaseConfig tunes a Lease.
type LeaseConfig struct {
	// Holder identifies this agent in the lease (see NewHolderID); it must be
	// unique per agent process.
	Holder string
	// TTL is how long a lease stays valid without renewal (5 minutes when 0).
	// The holder renews it every TTL/3.
	TTL time.Duration
	// Retry is how long to wait before trying again to take a lease held by
	// another agent (30 seconds when 0).
	Retry time.Duration
	// Clock gives the time and the waits (the system clock when nil).
	Clock scheduler.Clock
	// Log receives waits, take-overs and renewal problems; nil discards them.
	Log *zap.Logger
	// Process identifies this agent's process in the lease (see
	// CurrentProcess). When set, a lease whose holder ran on the same host,
	// boot and pid namespace and no longer runs (a killed or crashed daemon)
	// is taken over at once instead of after its TTL. A process holds leases
	// under one Holder only: a lease of another holder with this process's
	// pid is taken for one of a process that ended. The zero value disables
	// the check: only expired leases are taken over.
	Process LeaseProcess
}

// LeaseProcess identifies the process that holds a lease. A pid only names
// a process within one boot of one host and one pid namespace, so all four
// must match ours before the holder's liveness is looked at.
type LeaseProcess struct {
	// Host is the host name (the pod name in Kubernetes).
	Host string `json:"host"`
	// PID is the process id.
	PID int `json:"pid"`
	// Boot is the kernel's boot id (/proc/sys/kernel/random/boot_id).
	Boot string `json:"boot"`
	// PIDNamespace is the process's pid namespace (/proc/self/ns/pid, e.g.
	// "pid:[4026531836]"). In Kubernetes the containers of a pod share it
	// across container restarts only with shareProcessNamespace (as PGO sets
	// it); otherwise a restarted container waits for the TTL.
	PIDNamespace string `json:"pid-namespace"`
}

// CurrentProcess returns this process's LeaseProcess on host. A field that
// cannot be read stays empty, which disables the liveness check.
func CurrentProcess(host string) LeaseProcess {
	p := LeaseProcess{Host: host, PID: os.Getpid()}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		p.Boot = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		p.PIDNamespace = ns
	}
	return p
}

// usable reports whether p identifies a process well enough for the
// liveness check.
func (p LeaseProcess) usable() bool {
	return p.Host != "" && p.PID > 0 && p.Boot != "" && p.PIDNamespace != ""
}

// processAlive reports whether process pid of this pid namespace runs. A
// process that exists but is not ours (EPERM) runs; a zombie (killed, not
// yet reaped by its parent) does not.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // the signal found it: be conservative
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain them.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		switch b[i+2] {
		case 'Z', 'X', 'x':
			return false
		}
	}
	return true
}

// Lease keeps two agents from backing up one stanza into one repository at
// once: an object backup/<stanza>/pgsidecar.lease created with a conditional
// create (PutIfAbsent), renewed while the backup runs and deleted after it.
// A Lease is used for one backup at a time.
type Lease struct {
	store storage.Store
	key   string
	cfg   LeaseConfig
}

// leaseContent is the JSON stored in the lease object.
type leaseContent struct {
	Holder   string    `json:"holder"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
	// Process is the holder's process, when its agent set LeaseConfig.Process.
	Process LeaseProcess `json:"process,omitzero"`
}

// NewLease returns the lease of stanza in the repository store.
func NewLease(store storage.Store, stanza string, cfg LeaseConfig) *Lease {
	if cfg.TTL <= 0 {
		cfg.TTL = defaultLeaseTTL
	}
	if cfg.Retry <= 0 {
		cfg.Retry = defaultLeaseRetry
	}
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Lease{store: store, key: "backup/" + stanza + "/" + LeaseFile, cfg: cfg}
}

// NewHolderID returns a lease holder id: host (the pod name in Kubernetes),
// pid and 8 random bytes, so that two agents never share one.
func NewHolderID(host string, pid int) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate lease holder id: %w", err)
	}
	return host + "/" + strconv.Itoa(pid) + "/" + hex.EncodeToString(b[:]), nil
}

// Key returns the lease object's key.
func (l *Lease) Key() string { return l.key }

func (l *Lease) content(acquired time.Time) ([]byte, error) {
	now := l.cfg.Clock.Now().UTC()
	b, err := json.Marshal(leaseContent{Holder: l.cfg.Holder, Acquired: acquired.UTC(), Expires: now.Add(l.cfg.TTL), Process: l.cfg.Process})
	if err != nil {
		return nil, fmt.Errorf("encode lease: %w", err)
	}
	return b, nil
}

// read returns the current lease and its raw bytes, or an error matching
// storage.ErrNotExist. A lease that cannot be parsed is given an expiry of
// its modification time plus the TTL, so that garbage cannot block backups
// forever.
func (l *Lease) read(ctx context.Context) (leaseContent, []byte, error) {
	raw, err := storage.ReadAll(ctx, l.store, l.key)
	if err != nil {
		return leaseContent{}, nil, err
	}
	var c leaseContent
	if err := json.Unmarshal(raw, &c); err != nil || c.Holder == "" {
		info, serr := l.store.Stat(ctx, l.key)
		if serr != nil {
			return leaseContent{}, nil, serr
		}
		return leaseContent{Holder: "(unreadable)", Expires: info.ModTime.Add(l.cfg.TTL)}, raw, nil
	}
	return c, raw, nil
}

// tryAcquire makes one attempt; it reports whether the lease is now ours and,
// when not, who holds it until when.
func (l *Lease) tryAcquire(ctx context.Context) (bool, leaseContent, error) {
	for attempt := 0; attempt < 3; attempt++ {
		body, err := l.content(l.cfg.Clock.Now())
		if err != nil {
			return false, leaseContent{}, err
		}
		err = l.store.PutIfAbsent(ctx, l.key, bytes.NewReader(body))
		if err == nil {
			return true, leaseContent{}, nil
		}
		if !errors.Is(err, storage.ErrExist) {
			return false, leaseContent{}, fmt.Errorf("create lease %s: %w", l.key, err)
		}
		cur, raw, err := l.read(ctx)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			continue // released meanwhile: try again at once
		case err != nil:
			return false, leaseContent{}, fmt.Errorf("read lease %s: %w", l.key, err)
		}
		if cur.Holder == l.cfg.Holder {
			// Ours: a retried create whose first attempt succeeded, or a
			// release that failed earlier. Extend it now: it may be close to
			// expiry.
			if err := l.Renew(ctx); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					continue
				}
				return false, leaseContent{}, err
			}
			return true, leaseContent{}, nil
		}
		dead := l.holderDead(cur)
		if l.cfg.Clock.Now().Before(cur.Expires) && !dead {
			return false, cur, nil
		}
		// Expired, or its holder died: take it over. Check that it is still
		// the same lease right before deleting it, so that we do not delete a
		// lease another agent has just taken over; whoever wins the
		// conditional create next owns it. (The remaining window between this
		// read and the delete is caught by the holder check of every renewal.)
		again, err := storage.ReadAll(ctx, l.store, l.key)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			continue
		case err != nil:
			return false, leaseContent{}, fmt.Errorf("read lease %s: %w", l.key, err)
		case !bytes.Equal(again, raw):
			continue
		}
		if dead {
			l.cfg.Log.Warn("taking over the backup lease of an agent that no longer runs", zap.String("key", l.key),
				zap.String("holder", cur.Holder), zap.Int("pid", cur.Process.PID), zap.Time("expires", cur.Expires))
		} else {
			l.cfg.Log.Warn("taking over expired backup lease", zap.String("key", l.key),
				zap.String("holder", cur.Holder), zap.Time("expired", cur.Expires))
		}
		if err := l.store.Delete(ctx, l.key); err != nil {
			return false, leaseContent{}, fmt.Errorf("delete expired lease %s: %w", l.key, err)
		}
	}
	cur, _, err := l.read(ctx)
	if err != nil && !errors.Is(err, storage.ErrNotExist) {
		return false, leaseContent{}, fmt.Errorf("read lease %s: %w", l.key, err)
	}
	return false, cur, nil
}

// holderDead reports whether the holder of lease c is a process of our
// host, boot and pid namespace that no longer runs. Our own pid under
// another holder id is a process that ended (a pid is reused only after its
// process is gone, and this process holds leases under one holder only).
func (l *Lease) holderDead(c leaseContent) bool {
	me, p := l.cfg.Process, c.Process
	if !me.usable() || !p.usable() || p.Host != me.Host || p.Boot != me.Boot || p.PIDNamespace != me.PIDNamespace {
		return false
	}
	return p.PID == me.PID || !processAlive(p.PID)
}

// Acquire waits until the lease is ours: it retries every Retry while
// another agent holds an unexpired lease, and takes an expired one over, or
// at once one whose holder no longer runs (see LeaseConfig.Process). It
// returns ctx's error when ctx ends first.
func (l *Lease) Acquire(ctx context.Context) error {
	for {
		ok, cur, err := l.tryAcquire(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		l.cfg.Log.Info("backup lease held by another agent, waiting", zap.String("key", l.key),
			zap.String("holder", cur.Holder), zap.Time("expires", cur.Expires))
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for lease %s: %w", l.key, ctx.Err())
		case <-l.cfg.Clock.After(l.cfg.Retry):
		}
	}
}

// Renew extends the lease by TTL if it is still ours: it reads the lease back
// and compares the holder before overwriting it. It returns ErrLeaseLost when
// another agent holds it or it is gone.
func (l *Lease) Renew(ctx context.Context) error {
	cur, _, err := l.read(ctx)
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return fmt.Errorf("%s: %w (lease removed)", l.key, ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("read lease %s: %w", l.key, err)
	case cur.Holder != l.cfg.Holder:
		return fmt.Errorf("%s: %w (now held by %s)", l.key, ErrLeaseLost, cur.Holder)
	}
	body, err := l.content(cur.Acquired)
	if err != nil {
		return err
	}
	if err := l.store.Put(ctx, l.key, bytes.NewReader(body)); err != nil {
		return fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	return nil
}

// Release deletes the lease if it is ours; a lease held by another agent is
// left alone.
func (l *Lease) Release(ctx context.Context) error {
	cur, _, err := l.read(ctx)
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read lease %s: %w", l.key, err)
	case cur.Holder != l.cfg.Holder:
		return nil
	}
	if err := l.store.Delete(ctx, l.key); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Do acquires the lease (waiting for it), runs fn while renewing the lease
// every TTL/3, and releases it. fn's context is cancelled when the lease is
// lost (another agent holds it, or no renewal succeeded within the TTL); Do
// then returns an error matching ErrLeaseLost. A failed release is logged,
// not returned: the lease expires on its own.
func (l *Lease) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := l.Acquire(ctx); err != nil {
		return err
	}
	defer func() {
		if err := l.Release(context.WithoutCancel(ctx)); err != nil {
			l.cfg.Log.Warn("release backup lease", zap.Error(err))
		}
	}()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		renewed := l.cfg.Clock.Now()
		for {
			select {
			case <-stop:
				return
			case <-runCtx.Done():
				return
			case <-l.cfg.Clock.After(l.cfg.TTL / 3):
			}
			err := l.Renew(runCtx)
			switch {
			case err == nil:
				renewed = l.cfg.Clock.Now()
			case errors.Is(err, ErrLeaseLost):
				cancel(err)
				return
			case runCtx.Err() != nil:
				return
			default:
				l.cfg.Log.Warn("renew backup lease", zap.Error(err))
				if !l.cfg.Clock.Now().Before(renewed.Add(l.cfg.TTL)) {
					cancel(fmt.Errorf("%s: %w (no renewal for %s: %w)", l.key, ErrLeaseLost, l.cfg.TTL, err))
					return
				}
			}
		}
	}()
	err := fn(runCtx)
	close(stop)
	wg.Wait()
	if cause := context.Cause(runCtx); errors.Is(cause, ErrLeaseLost) {
		if err == nil {
			return cause
		}
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// isPrimary reports whether the cluster cc connects to is a primary (not in
// recovery): only the primary takes backups.
func isPrimary(ctx context.Context, cc *pgx.ConnConfig) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return false, fmt.Errorf("connect to check for a primary: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var recovery bool
	if err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&recovery); err != nil {
		return false, fmt.Errorf("query pg_is_in_recovery(): %w", err)
	}
	return !recovery, nil
}
