package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// Fixed locations of the tools the harness drives (see the test services
// contract in the README and scripts/services.sh).
const (
	// pgBin holds the PostgreSQL 15 server and client programs.
	pgBin = "/usr/lib/postgresql/15/bin"
	// pgbackrestBin is pgBackRest 2.45 from the Debian package.
	pgbackrestBin = "/usr/bin/pgbackrest"
	// osUserName is the unprivileged OS user clusters and pgbackrest run as.
	osUserName = "pgsidecar"
	// workRoot holds the run dir of each test run. It must be traversable
	// by osUserName, and short enough for Unix socket paths below it.
	workRoot = "/tmp"
	// requireName is the PGSIDECAR_TEST_REQUIRE entry that turns a missing
	// prerequisite into a failure.
	requireName = "postgres"
	// defaultCmdTimeout bounds one command run by runAsUser.
	defaultCmdTimeout = 5 * time.Minute
)

// pgsidecarBin is the pgsidecar binary built by TestMain from ./cmd/pgsidecar,
// in a directory the unprivileged user can execute from. It is set once,
// before any test runs, and only read afterwards.
var pgsidecarBin string

// TestMain builds the pgsidecar binary once for the whole package. When
// cmd/pgsidecar does not build, no test runs and the package fails with the
// build output. The build is skipped when the tests would skip anyway
// (-short, or no PostgreSQL here, and postgres not required).
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// One run root holds the binary and every work dir, so that a run
	// killed before its cleanups (a -timeout panic) leaves one directory.
	root, err := os.MkdirTemp(workRoot, "pgsidecar-it-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: create run dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(root)
	binDir := filepath.Join(root, "bin")
	for _, d := range []string{root, binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "integration: create run dir: %v\n", err)
			return 1
		}
		if err := os.Chmod(d, 0o755); err != nil { // traversable by the unprivileged user
			fmt.Fprintf(os.Stderr, "integration: chmod run dir: %v\n", err)
			return 1
		}
	}
	if _, err := hostPrerequisites(); (err != nil || testing.Short()) && !storagetest.Required(requireName) {
		return m.Run() // every test skips in requirePostgres
	}
	bin, err := buildPgsidecar(binDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: cmd/pgsidecar does not build, no test runs:\n%v\n", err)
		return 1
	}
	pgsidecarBin = bin
	return m.Run()
}

// runDir is the directory of this test run (created by TestMain, removed
// when the run ends): the parent of the binary's directory.
func runDir() string {
	return filepath.Dir(filepath.Dir(pgsidecarBin))
}

// buildPgsidecar builds ./cmd/pgsidecar of this module into dir and returns
// the binary's path. The error carries the compiler output.
func buildPgsidecar(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find go tool: %w", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the pgsidecar module")
	}
	bin := filepath.Join(dir, "pgsidecar")
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, "./cmd/pgsidecar")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgsidecar: %w\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", fmt.Errorf("chmod pgsidecar binary: %w", err)
	}
	return bin, nil
}

// osUser is the unprivileged OS user that runs PostgreSQL, pgbackrest and
// pgsidecar in the tests.
type osUser struct {
	Name     string
	UID, GID uint32
}

// credential returns the process credential that runs a child as u.
func (u osUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.GID}}
}

// requirePostgres checks the prerequisites of the integration tests: Linux,
// root, the OS user pgsidecar, PostgreSQL 15, pgbackrest and the pgsidecar
// binary. When one is missing the test fails if PGSIDECAR_TEST_REQUIRE lists
// "postgres" and is skipped otherwise. In -short mode it skips unless
// postgres is required. It returns the unprivileged user.
func requirePostgres(t testing.TB) osUser {
	t.Helper()
	required := storagetest.Required(requireName)
	if testing.Short() && !required {
		t.Skipf("integration tests skip in -short mode (%s=%s runs them)", storagetest.RequireEnv, requireName)
	}
	u, err := hostPrerequisites()
	if err == nil && pgsidecarBin == "" {
		err = errors.New("the pgsidecar binary was not built by TestMain")
	}
	if err != nil {
		if required {
			t.Fatalf("integration prerequisites are required (%s=%s) but missing: %v",
				storagetest.RequireEnv, os.Getenv(storagetest.RequireEnv), err)
		}
		t.Skipf("integration prerequisites missing (set %s=%s to make this a failure): %v",
			storagetest.RequireEnv, requireName, err)
	}
	return u
}

// hostPrerequisites returns the unprivileged user, or why the integration
// tests cannot run on this host.
func hostPrerequisites() (osUser, error) {
	const setup = "run `bash scripts/services.sh postgres` as root"
	if runtime.GOOS != "linux" {
		return osUser{}, fmt.Errorf("integration tests need Linux, not %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return osUser{}, errors.New("integration tests need root (PostgreSQL runs as the OS user " + osUserName + ")")
	}
	for _, p := range []string{
		filepath.Join(pgBin, "initdb"), filepath.Join(pgBin, "postgres"),
		filepath.Join(pgBin, "psql"), filepath.Join(pgBin, "pgbench"),
		pgbackrestBin,
	} {
		if _, err := os.Stat(p); err != nil {
			return osUser{}, fmt.Errorf("%w (%s to install PostgreSQL 15 and pgbackrest 2.45)", err, setup)
		}
	}
	pu, err := user.Lookup(osUserName)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %s: %w (%s to create it)", osUserName, err, setup)
	}
	uid, err := strconv.ParseUint(pu.Uid, 10, 32)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %s: uid %q: %w", osUserName, pu.Uid, err)
	}
	gid, err := strconv.ParseUint(pu.Gid, 10, 32)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %s: gid %q: %w", osUserName, pu.Gid, err)
	}
	return osUser{Name: osUserName, UID: uint32(uid), GID: uint32(gid)}, nil
}

// newWorkDir creates a fresh directory in the run dir owned by u (mode 0700)
// and removes it, with everything in it, at cleanup. Register it before anything
// that must stop using it at cleanup (cleanups run last-in first-out).
func newWorkDir(t testing.TB, u osUser, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(runDir(), name+"-")
	if err != nil {
		t.Fatalf("create work dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove work dir: %v", err)
		}
	})
	if err := os.Chown(dir, int(u.UID), int(u.GID)); err != nil {
		t.Fatalf("chown work dir: %v", err)
	}
	return dir
}

// mkdirAs creates dir (mode 0700) owned by u.
func mkdirAs(t testing.TB, u osUser, dir string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("create dir: %v", err)
	}
	if err := os.Chown(dir, int(u.UID), int(u.GID)); err != nil {
		t.Fatalf("chown dir: %v", err)
	}
	return dir
}

// writeFileAs writes a file (mode 0600) owned by u.
func writeFileAs(t testing.TB, u osUser, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", filepath.Base(path), err)
	}
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		t.Fatalf("chown %s: %v", filepath.Base(path), err)
	}
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomHex returns n random bytes, hex encoded.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// userCmd is a command run as the unprivileged user by runAsUser.
type userCmd struct {
	// Path is the program, Args its arguments (without the program name).
	Path string
	Args []string
	// Dir is the working directory; it must be traversable by the user.
	// Empty means /tmp.
	Dir string
	// Env is added to the base environment (PATH with the PostgreSQL
	// binaries, HOME=Dir, LC_ALL=C). The test's own environment is not
	// passed on.
	Env []string
	// Timeout bounds the run; zero means five minutes.
	Timeout time.Duration
}

// cmdResult is what a command printed and how it exited. Code is the exit
// status, or -1 when the process was killed by a signal.
type cmdResult struct {
	Stdout, Stderr string
	Code           int
}

// String renders the result for failure messages.
func (r cmdResult) String() string {
	return fmt.Sprintf("exit code %d\n--- stdout:\n%s--- stderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// runAsUser runs c as u and returns its output and exit status. It fails the
// test only when the command cannot be started or times out; the caller
// judges the exit status. The command runs in its own process group, which
// is killed when it times out.
func runAsUser(t testing.TB, u osUser, c userCmd) cmdResult {
	t.Helper()
	ctx := t.Context()
	if ctx.Err() != nil { // called from a Cleanup: the test's context is done
		ctx = context.Background()
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = defaultCmdTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir := c.Dir
	if dir == "" {
		dir = workRoot
	}
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(dir), c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential(), Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: %v (timeout %v)\n%s", filepath.Base(c.Path), strings.Join(c.Args, " "), ctx.Err(), timeout, res)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run %s: %v", filepath.Base(c.Path), err)
	}
	return res
}

// mustRunAsUser is runAsUser that also fails the test on a non-zero exit.
func mustRunAsUser(t testing.TB, u osUser, c userCmd) cmdResult {
	t.Helper()
	res := runAsUser(t, u, c)
	if res.Code != 0 {
		t.Fatalf("%s %s failed: %s", filepath.Base(c.Path), strings.Join(c.Args, " "), res)
	}
	return res
}

// baseEnv is the environment of every command run as the unprivileged user.
func baseEnv(home string) []string {
	return []string{
		"PATH=" + pgBin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"LC_ALL=C",
		"LANG=C",
	}
}

// tail returns the last n lines of the file at path, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
