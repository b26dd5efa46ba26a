package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Bazel is the agent's Bazel installation, used for every session whose
// client has the same install_md5.
type Bazel struct {
	// InstallBase holds A-server.jar (Debian: /usr/share/bazel).
	InstallBase string
	// InstallMD5 identifies the release; read from
	// <InstallBase>/install_base_key when empty.
	InstallMD5 string
	// JavaHome is the JDK that runs the server and is passed as
	// --default_system_javabase; found from java on PATH when empty.
	JavaHome string
	// JVMFlags are added to the server's JVM (e.g. -Xmx8g). The client's
	// own JVM flags never cross.
	JVMFlags []string
}

// Resolve fills the empty fields from the installation.
func (b Bazel) Resolve() (Bazel, error) {
	if b.InstallBase == "" {
		b.InstallBase = "/usr/share/bazel"
	}
	if _, err := os.Stat(filepath.Join(b.InstallBase, "A-server.jar")); err != nil {
		return b, fmt.Errorf("bazel install base: %w", err)
	}
	if b.InstallMD5 == "" {
		key, err := os.ReadFile(filepath.Join(b.InstallBase, "install_base_key"))
		if err != nil {
			return b, fmt.Errorf("bazel install_md5: %w", err)
		}
		b.InstallMD5 = strings.TrimSpace(string(key))
	}
	if b.JavaHome == "" {
		java, err := exec.LookPath("java")
		if err != nil {
			return b, fmt.Errorf("bazel server JDK: %w", err)
		}
		real, err := filepath.EvalSymlinks(java)
		if err != nil {
			return b, fmt.Errorf("bazel server JDK: %w", err)
		}
		b.JavaHome = filepath.Dir(filepath.Dir(real))
	}
	if _, err := os.Stat(filepath.Join(b.JavaHome, "bin", "java")); err != nil {
		return b, fmt.Errorf("bazel server JDK: %w", err)
	}
	return b, nil
}

// ServerCommand is the command line of a Bazel server for the mirrored
// paths m, with the client's passed-through startup options. The server
// reads its own pid from server/server.pid.txt (the client's daemonize
// helper writes it); a shell writes it and then execs java in its place.
func (b Bazel) ServerCommand(m Mirror, startupOptions []string) []string {
	ob := m.OutputBase
	cmd := []string{
		"/bin/sh", "-c", `printf %s $$ > "$0" && exec "$@"`, filepath.Join(ob, "server", "server.pid.txt"),
		filepath.Join(b.JavaHome, "bin", "java"),
		"-XX:+HeapDumpOnOutOfMemoryError",
		"-XX:HeapDumpPath=" + ob,
		"--add-opens=java.base/java.nio=ALL-UNNAMED",
		"--add-opens=java.base/java.lang=ALL-UNNAMED",
		"-Xverify:none", // as the client passes it: faster start-up
		"-Djava.util.logging.config.file=" + filepath.Join(ob, "javalog.properties"),
		"-Dcom.google.devtools.build.lib.util.LogHandlerQuerier.class=com.google.devtools.build.lib.util.SimpleLogHandler$HandlerQuerier",
		"-XX:-MaxFDLimit",
		"-Djava.library.path=" + b.InstallBase + "/",
		"-Dfile.encoding=ISO-8859-1",
	}
	cmd = append(cmd, b.JVMFlags...)
	cmd = append(cmd,
		"-jar", filepath.Join(b.InstallBase, "A-server.jar"),
		"--max_idle_secs=0",
		"--connect_timeout_secs=30",
		"--output_user_root="+m.OutputUserRoot,
		"--install_base="+b.InstallBase,
		"--install_md5="+b.InstallMD5,
		"--output_base="+ob,
		"--workspace_directory="+m.Workspace,
		"--default_system_javabase="+b.JavaHome,
		"--failure_detail_out="+filepath.Join(ob, "failure_detail.rawproto"),
	)
	return append(cmd, startupOptions...)
}

// javalogProperties is the server's logging configuration, which the
// client normally writes into the output base.
func javalogProperties(outputBase string) string {
	return "handlers=com.google.devtools.build.lib.util.SimpleLogHandler\n" +
		".level=INFO\n" +
		"com.google.devtools.build.lib.util.SimpleLogHandler.level=INFO\n" +
		"com.google.devtools.build.lib.util.SimpleLogHandler.prefix=" + filepath.Join(outputBase, "java.log") + "\n" +
		"com.google.devtools.build.lib.util.SimpleLogHandler.limit=1024000\n" +
		"com.google.devtools.build.lib.util.SimpleLogHandler.total_limit=20971520\n" +
		"com.google.devtools.build.lib.util.SimpleLogHandler.formatter=com.google.devtools.build.lib.util.SingleLineFormatter\n"
}

// EtcEntries are the names under /etc the JDK's configuration lives in
// (Debian links JAVA_HOME/conf/*.properties to /etc/java-17-openjdk),
// for the sandbox's /etc allow-list.
func (b Bazel) EtcEntries() []string {
	var out []string
	for _, dir := range []string{filepath.Join(b.JavaHome, "conf"), filepath.Join(b.JavaHome, "conf", "security"), filepath.Join(b.JavaHome, "lib", "security")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			target, err := filepath.EvalSymlinks(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			rel, ok := strings.CutPrefix(target, "/etc/")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(rel, "/")
			if name != "" && name != "passwd" && name != "group" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}
