package proxy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/rbs"
)

// ErrBatch means the client started the server in batch mode (outside a
// workspace, or with --batch), which remote Bazel does not serve.
var ErrBatch = errors.New("batch mode")

// ServerArgs is what the Bazel client passed to <javabase>/bin/java.
type ServerArgs struct {
	// JVMFlags come before -jar; they are dropped, never passed on.
	JVMFlags []string
	// ServerFlags are all flags after -jar <jar>.
	ServerFlags []string

	OutputBase       string
	OutputUserRoot   string
	InstallBase      string
	InstallMD5       string
	Workspace        string
	FailureDetailOut string
	// MaxIdle is --max_idle_secs: the proxy exits after that long without a
	// command (0: never).
	MaxIdle        time.Duration
	ConnectTimeout time.Duration
	// StartupOptions are the server flags passed on to the remote server.
	StartupOptions []string
}

// ParseServerArgs splits the java command line the client uses to start
// its server: JVM flags, -jar <install_base>/A-server.jar, server flags.
func ParseServerArgs(argv []string) (ServerArgs, error) {
	var a ServerArgs
	jar := -1
	for i, arg := range argv {
		if arg == "-jar" {
			jar = i
			break
		}
	}
	if jar < 0 || jar+1 >= len(argv) {
		return a, errors.New("server arguments: no -jar <server jar>")
	}
	a.JVMFlags = append([]string(nil), argv[:jar]...)
	a.ServerFlags = append([]string(nil), argv[jar+2:]...)
	a.MaxIdle = 3 * time.Hour
	a.ConnectTimeout = 30 * time.Second
	for i, f := range a.ServerFlags {
		if !strings.HasPrefix(f, "--") {
			// A batch-mode command follows the startup options.
			if strings.Contains(strings.Join(a.ServerFlags[:i], "\x00"), "--batch") {
				return a, ErrBatch
			}
			return a, fmt.Errorf("server arguments: unexpected %q", f)
		}
		name, value, hasValue := strings.Cut(f[2:], "=")
		if name == "batch" {
			return a, ErrBatch
		}
		if !hasValue {
			continue
		}
		var err error
		switch name {
		case "output_base":
			a.OutputBase = value
		case "output_user_root":
			a.OutputUserRoot = value
		case "install_base":
			a.InstallBase = value
		case "install_md5":
			a.InstallMD5 = value
		case "workspace_directory":
			a.Workspace = value
		case "failure_detail_out":
			a.FailureDetailOut = value
		case "max_idle_secs":
			a.MaxIdle, err = seconds(value)
		case "connect_timeout_secs":
			a.ConnectTimeout, err = seconds(value)
		}
		if err != nil {
			return a, fmt.Errorf("server arguments: --%s: %w", name, err)
		}
	}
	for _, p := range []struct{ name, v string }{
		{"output_base", a.OutputBase}, {"workspace_directory", a.Workspace}, {"output_user_root", a.OutputUserRoot},
	} {
		if p.v == "" || !filepath.IsAbs(p.v) || filepath.Clean(p.v) != p.v {
			return a, fmt.Errorf("server arguments: --%s=%q is not a clean absolute path", p.name, p.v)
		}
	}
	if a.InstallMD5 == "" {
		return a, errors.New("server arguments: no --install_md5")
	}
	opts, err := rbs.PassThroughStartupOptions(a.ServerFlags)
	if err != nil {
		return a, fmt.Errorf("server arguments: %w", err)
	}
	a.StartupOptions = opts
	return a, nil
}

func seconds(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<31 {
		return 0, fmt.Errorf("%q is not a number of seconds", v)
	}
	return time.Duration(n) * time.Second, nil
}
