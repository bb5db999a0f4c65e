package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/storage"
)

// The daemon's socket protocol. A client connects to the unix socket,
// writes one request as a line of JSON, and reads one response line; then
// the connection is closed.
//
//	request:  {"v":1,"op":"push","name":"000000010000000000000003","path":"/pgdata/pg_wal/000000010000000000000003"}
//	          {"v":1,"op":"get","name":"000000010000000000000003","path":"/pgdata/pg_wal/RECOVERYXLOG"}
//	          {"v":1,"op":"status"}
//	response: {"v":1,"ok":true,"message":"..."}
//	          {"v":1,"ok":true,"status":{"running":{...},"queued":[...]}}
//	          {"v":1,"ok":false,"code":104,"kind":"","message":"..."}
//	          {"v":1,"ok":false,"fallback":true,"message":"the daemon is shutting down"}
//
// The server validates name with archive.ParseName before it looks at any
// file, and requires path to be in pg1-path/pg_wal: for push exactly
// pg_wal/<name>. A push answers once the file is durable in every
// repository. ok=false carries the pgBackRest error code of the failure
// (0 when it has none; kind then names the storage sentinel, if any). With
// fallback=true the daemon declines the request (unsupported version,
// shutting down): the client then does the work itself, as it does when no
// daemon answers. Op "status" reads the backup queue (QueueStatus: the
// running backup with its progress, the queued ones); it changes nothing.
const (
	protocolVersion = 1
	// maxRequestLine bounds a request line: a name and a path.
	maxRequestLine = 8 << 10
	// maxResponseLine bounds a response line (error messages name every repository).
	maxResponseLine = 1 << 20
	// dialTimeout bounds the client's connection to the socket. A unix
	// socket connects at once, or fails at once when nobody listens.
	dialTimeout = time.Second
	// requestReadTimeout bounds how long the server waits for a request line.
	requestReadTimeout = 5 * time.Second
	// defaultSpoolPath is pgBackRest's default spool-path.
	defaultSpoolPath = "/var/spool/pgbackrest"
	// maxSocketPath is the limit of a unix socket path on Linux (sun_path
	// holds 108 bytes with the terminating zero).
	maxSocketPath = 107
)

// request is one request to the daemon.
type request struct {
	V    int    `json:"v"`
	Op   string `json:"op"`
	Name string `json:"name"`
	Path string `json:"path"`
	// PgPath is the client's pg1-path: a daemon serving another cluster
	// (a restore beside the running one) declines with fallback.
	PgPath string `json:"pg1-path,omitempty"`
	// Repo and Type are the repository and backup type of op "backup".
	Repo      int    `json:"repo,omitempty"`
	Type      string `json:"type,omitempty"`
	StartFast bool   `json:"start-fast,omitempty"`
}

// response is the daemon's answer.
type response struct {
	V        int    `json:"v"`
	OK       bool   `json:"ok"`
	Code     int    `json:"code,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Fallback bool   `json:"fallback,omitempty"`
	Message  string `json:"message,omitempty"`
	// Status is the answer to op "status".
	Status *QueueStatus `json:"status,omitempty"`
}

// Storage error kinds carried by a response whose error has no code.
var errorKinds = map[string]error{
	"not-exist":  storage.ErrNotExist,
	"permission": storage.ErrPermission,
	"invalid":    storage.ErrInvalid,
	"canceled":   context.Canceled,
}

// errorResponse turns err into an answer.
func errorResponse(err error) response {
	r := response{V: protocolVersion, Code: errorCode(err), Message: err.Error()}
	if r.Code == 0 {
		for kind, sentinel := range errorKinds {
			if errors.Is(err, sentinel) {
				r.Kind = kind
				break
			}
		}
	}
	return r
}

// err returns the error an answer describes, nil when it is a success.
func (r response) err() error {
	if r.OK {
		return nil
	}
	err := errors.New(r.Message)
	if s, ok := errorKinds[r.Kind]; ok && r.Code == 0 {
		err = fmt.Errorf("%s: %w", r.Message, s)
	}
	return withCode(r.Code, err)
}

// errorCode returns the exit code an error carries, 0 if none.
func errorCode(err error) int {
	var ce CodedError
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

// SocketPath returns the path of the daemon's unix socket for cfg:
// <spool-path>/pgsidecar-<stanza>.sock. The daemon (run) and the clients
// (archive-push, archive-get) resolve it from the same configuration, so
// archive_command needs no extra option. spool-path is pgBackRest's option;
// pgBackRest only resolves it with archive-async=y, and otherwise its default
// /var/spool/pgbackrest applies to both sides. Set it in [global] or the
// stanza section, not in a command section, so that both sides see it.
func SocketPath(cfg *config.Config) (string, error) {
	if cfg.Stanza == "" || strings.ContainsAny(cfg.Stanza, "/\x00") {
		return "", fmt.Errorf("the daemon socket needs a stanza name without '/' (stanza %q)", cfg.Stanza)
	}
	p := filepath.Join(spoolPath(cfg), "pgsidecar-"+cfg.Stanza+".sock")
	if len(p) > maxSocketPath {
		return "", fmt.Errorf("socket path %s is longer than %d bytes: choose a shorter spool-path", p, maxSocketPath)
	}
	return p, nil
}

// listenSocket listens on the unix socket path with mode 0600. A socket
// file left by a daemon that died is removed, but only when nothing answers
// on it; a file that is not a socket is never removed. The socket is created
// under a temporary name, restricted, then renamed into place, so that it is
// never reachable with looser permissions. It returns the listener and the
// socket's file info, which removeSocket uses to remove only its own socket.
func listenSocket(path string) (*net.UnixListener, os.FileInfo, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("create socket directory (spool-path, which pgsidecar reads with archive-async=y): %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("%s exists and is not a socket: not removing it", path)
		}
		if c, err := net.DialTimeout("unix", path, dialTimeout); err == nil {
			_ = c.Close()
			return nil, nil, fmt.Errorf("another daemon answers on %s", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	tmp := filepath.Join(filepath.Dir(path), ".pgsidecar-"+strconv.Itoa(os.Getpid())+".sock")
	if len(tmp) > maxSocketPath {
		tmp = path + ".t"
	}
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", tmp, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("restrict socket: %w", err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("move socket into place: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat socket: %w", err))
	}
	return ln, fi, nil
}

// removeSocket removes the socket at path if it is still the one ours
// describes (another daemon may have replaced it).
func removeSocket(path string, ours os.FileInfo) {
	if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, ours) {
		_ = os.Remove(path)
	}
}

// readRequest reads one request line from c.
func readRequest(c net.Conn) (request, error) {
	_ = c.SetReadDeadline(time.Now().Add(requestReadTimeout))
	line, err := readLine(bufio.NewReaderSize(c, 4096), maxRequestLine)
	if err != nil {
		return request{}, err
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return request{}, fmt.Errorf("decode request: %w", err)
	}
	return req, nil
}

// readLine reads a line of at most max bytes, without its newline.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("line longer than %d bytes", max)
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// writeResponse writes one response line to c.
func writeResponse(c net.Conn, r response) error {
	r.V = protocolVersion
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_ = c.SetWriteDeadline(time.Now().Add(requestReadTimeout))
	_, err = c.Write(append(b, '\n'))
	return err
}

// errNoDaemon reports that no daemon answered; the client works alone.
var errNoDaemon = errors.New("no daemon answered")

// callDaemon sends req to the daemon listening on socket and returns its
// answer. It waits at most timeout for the answer. Any failure to reach the
// daemon or to read its answer, and an answer the daemon declined, wrap
// errNoDaemon: the caller then does the work itself.
func callDaemon(ctx context.Context, socket string, req request, timeout time.Duration) (response, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", errNoDaemon, err)
	}
	defer c.Close()
	if timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(timeout))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req.V = protocolVersion
	b, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return response{}, fmt.Errorf("%w: send request: %w", errNoDaemon, err)
	}
	line, err := readLine(bufio.NewReader(c), maxResponseLine)
	if err != nil {
		if ctx.Err() != nil {
			return response{}, ctx.Err()
		}
		return response{}, fmt.Errorf("%w: read answer: %w", errNoDaemon, err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return response{}, fmt.Errorf("%w: decode answer: %w", errNoDaemon, err)
	}
	if resp.V != protocolVersion || resp.Fallback {
		return response{}, fmt.Errorf("%w: declined (protocol %d): %s", errNoDaemon, resp.V, resp.Message)
	}
	return resp, nil
}
