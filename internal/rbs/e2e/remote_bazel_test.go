package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
	"github.com/nimbus-build/nimbus/internal/rbs/serverdir"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// workspace is the developers' project: a genrule, an sh_binary, an
// sh_test, a cc_binary, a failing rule and a slow one.
func workspace(marker string) map[string]string {
	files := map[string]string{
		"WORKSPACE": `# Offline stand-ins for the rule sets Bazel 4.2's C++ toolchain loads.
local_repository(name = "rules_cc", path = "third_party/rules_cc")
local_repository(name = "rules_java", path = "third_party/rules_java")
local_repository(name = "remote_coverage_tools", path = "third_party/remote_coverage_tools")
`,
		"BUILD": `
genrule(name = "gen", srcs = ["data.txt"], outs = ["gen.txt"], cmd = "tr a-z A-Z < $< > $@")
sh_binary(name = "hello", srcs = ["hello.sh"], data = ["data.txt"])
sh_test(name = "hello_test", srcs = ["hello_test.sh"], data = ["data.txt"])
cc_binary(name = "cc", srcs = ["main.cc"])
genrule(name = "fail", outs = ["fail.txt"], cmd = "echo failing on purpose >&2; exit 3")
genrule(name = "slow", outs = ["slow.txt"], cmd = "sleep 120 # ` + marker + `\n touch $@", tags = ["no-cache"])
genrule(name = "snoop", outs = ["snoop.txt"], cmd = "cat $$SNOOP_PATHS > $@ 2>/dev/null && echo LEAKED >> $@ || echo isolated > $@")
genrule(name = "netsnoop", outs = ["netsnoop.txt"], tags = ["no-cache"],
    cmd = "for t in $$NETSNOOP_TARGETS; do if (exec 3<>/dev/tcp/$${t%:*}/$${t##*:}) 2>/dev/null; then echo reached $$t; else echo refused $$t; fi; done > $@")
`,
		"data.txt":      "remote data\n",
		"hello.sh":      "#!/bin/bash\necho \"hello $1: $(cat data.txt)\"\n",
		"hello_test.sh": "#!/bin/bash\ngrep -q 'remote data' data.txt\n",
		"main.cc":       "#include <cstdio>\nint main() { std::puts(\"built remotely in C++\"); return 0; }\n",
	}
	for k, v := range offlineRules {
		files[k] = v
	}
	return files
}

// offlineRules are minimal rules_cc and rules_java repositories that
// forward to the native rules, so C++ builds need no download.
var offlineRules = map[string]string{
	"third_party/rules_cc/WORKSPACE": "",
	"third_party/rules_cc/cc/BUILD":  "",
	"third_party/rules_cc/cc/defs.bzl": `def cc_binary(**kwargs):
    native.cc_binary(**kwargs)
def cc_library(**kwargs):
    native.cc_library(**kwargs)
def cc_test(**kwargs):
    native.cc_test(**kwargs)
def cc_import(**kwargs):
    native.cc_import(**kwargs)
def cc_toolchain(**kwargs):
    native.cc_toolchain(**kwargs)
def cc_toolchain_suite(**kwargs):
    native.cc_toolchain_suite(**kwargs)
def objc_library(**kwargs):
    native.objc_library(**kwargs)
def objc_import(**kwargs):
    native.objc_import(**kwargs)
`,
	"third_party/remote_coverage_tools/WORKSPACE": "",
	"third_party/remote_coverage_tools/BUILD": `package(default_visibility = ["//visibility:public"])
sh_binary(name = "coverage_report_generator", srcs = ["unsupported.sh"])
sh_binary(name = "lcov_merger", srcs = ["unsupported.sh"])
`,
	"third_party/remote_coverage_tools/unsupported.sh": "#!/bin/sh\necho 'coverage is not available offline' >&2\nexit 1\n",
	"third_party/rules_java/WORKSPACE":                 "",
	"third_party/rules_java/java/BUILD":                "",
	"third_party/rules_java/java/defs.bzl": `def java_import(**kwargs):
    native.java_import(**kwargs)
def java_runtime(**kwargs):
    native.java_runtime(**kwargs)
def java_toolchain(**kwargs):
    native.java_toolchain(**kwargs)
def java_library(**kwargs):
    native.java_library(**kwargs)
def java_binary(**kwargs):
    native.java_binary(**kwargs)
`,
}

func TestRemoteBazel(t *testing.T) {
	requireTools(t)
	root := tempDirForSandboxes(t)
	ns := newNetns(t)
	ca, err := pki.NewCA("nimbus test CA")
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(root, "agent-storage")
	agent := startAgent(t, ns, ca, storage)
	if !strings.HasPrefix(agent.addr, ns.agentIP+":") {
		t.Fatalf("agent listens on %s, want %s", agent.addr, ns.agentIP)
	}
	cp := startControlPlane(t, ca, root, agent, map[string]auth.Principal{
		"tok-alice":   {Kind: auth.KindUser, Org: "acme", ID: "t1", Name: "alice", Role: auth.RoleDeveloper},
		"tok-bob":     {Kind: auth.KindUser, Org: "acme", ID: "t2", Name: "bob", Role: auth.RoleDeveloper},
		"tok-mallory": {Kind: auth.KindUser, Org: "acme", ID: "t3", Name: "mallory", Role: auth.RoleViewer},
	})
	const marker = "nimbus-e2e-slow-action"
	alice := newDeveloper(t, root, "alice", "tok-alice", cp, workspace(marker))

	aliceSession := func(t *testing.T) string {
		t.Helper()
		for _, s := range agent.sessions(t) {
			if s.User == pki.UserIdentity("acme", "t1") { // alice's token
				return s.ID
			}
		}
		t.Fatal("alice has no session on the agent")
		return ""
	}

	t.Run("build", func(t *testing.T) {
		r := alice.bazel(t, "build", "//:gen", "//:cc", "//:hello")
		if r.code != 0 {
			t.Fatalf("bazel build: exit %d\n%s", r.code, r.stderr)
		}
		for _, want := range []string{"requesting a remote Bazel server", "started session", "Build completed successfully"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		// The outputs are here, through the local bazel-bin link.
		got, err := os.ReadFile(filepath.Join(alice.workspace, "bazel-bin", "gen.txt"))
		if err != nil || string(got) != "REMOTE DATA\n" {
			t.Errorf("bazel-bin/gen.txt = %q, %v", got, err)
		}
		out, err := exec.Command(filepath.Join(alice.workspace, "bazel-bin", "cc")).Output()
		if err != nil || string(out) != "built remotely in C++\n" {
			t.Errorf("bazel-bin/cc printed %q, %v", out, err)
		}
		ob := alice.outputBase(t)
		st, err := os.Stat(filepath.Join(ob, "server"))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("server dir: %v, %v; want mode 0700", st.Mode(), err)
		}
		// The remote server runs as an unprivileged uid, on its own copy.
		infos := agent.sessions(t)
		if len(infos) != 1 || infos[0].UID < 61000 || infos[0].State != "ready" {
			t.Fatalf("agent sessions: %+v", infos)
		}
		if _, err := os.Stat(filepath.Join(infos[0].Storage, "ws", "BUILD")); err != nil {
			t.Errorf("agent copy of the workspace: %v", err)
		}
		// Only the allowed part of the client's environment crossed.
		if log := alice.proxyLog(t); strings.Contains(log, "do-not-send") {
			t.Errorf("the secret reached the proxy log")
		}
	})

	t.Run("test", func(t *testing.T) {
		r := alice.bazel(t, "test", "//:hello_test")
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "PASSED") {
			t.Fatalf("bazel test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(alice.workspace, "bazel-testlogs", "hello_test", "test.log")); err != nil {
			t.Errorf("test log not brought back: %v", err)
		}
	})

	t.Run("run", func(t *testing.T) {
		r := alice.bazel(t, "run", "//:hello", "--", "world")
		if r.code != 0 || !strings.Contains(r.stdout, "hello world: remote data") {
			t.Fatalf("bazel run: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("failing build", func(t *testing.T) {
		r := alice.bazel(t, "build", "//:fail")
		if r.code != 1 || !strings.Contains(r.stderr, "failing on purpose") {
			t.Fatalf("bazel build //:fail: exit %d, want 1\n%s", r.code, r.stderr)
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := alice.command(ctx, "build", "//:slow")
		stderr := &testenv.Buffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the action runs on the agent.
		if err := waitFor(2*time.Minute, func() bool { return len(processesMentioning(marker)) > 0 }); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the slow action never started: %v\n%s", err, stderr.String())
		}
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		t.Logf("alice$ bazel build //:slow (interrupted)\n%s", stderr.String())
		if code != 8 {
			t.Errorf("bazel build after Ctrl-C: exit %d (%v), want 8\n%s", code, err, stderr.String())
		}
		// The remote action was cancelled, not left running.
		if err := waitFor(30*time.Second, func() bool { return len(processesMentioning(marker)) == 0 }); err != nil {
			t.Errorf("the remote action still runs: %v", processesMentioning(marker))
		}
	})

	t.Run("edit then rebuild", func(t *testing.T) {
		writeFile(t, filepath.Join(alice.workspace, "data.txt"), "edited data\n", 0o644)
		r := alice.bazel(t, "build", "//:gen")
		if r.code != 0 {
			t.Fatalf("bazel build: exit %d\n%s", r.code, r.stderr)
		}
		got, _ := os.ReadFile(filepath.Join(alice.workspace, "bazel-bin", "gen.txt"))
		if string(got) != "EDITED DATA\n" {
			t.Errorf("bazel-bin/gen.txt = %q after the edit", got)
		}
		var last []string
		for _, s := range agent.sessions(t) {
			if s.ID == aliceSession(t) {
				last = s.LastSync.Written
			}
		}
		if diff := cmp.Diff([]string{"data.txt"}, last); diff != "" {
			t.Errorf("files synced for the edit (-want +got):\n%s", diff)
		}
	})

	t.Run("server crash restarts it", func(t *testing.T) {
		// The remote Bazel server's JVM: its command line names the
		// developer's output base.
		ob := "--output_base=" + alice.outputBase(t)
		var pids []int
		for _, p := range processesMentioning(ob) {
			// The process whose program is java: not the proxy (which got the
			// same arguments), bwrap or the shell that exec'd java.
			if f := strings.Fields(p); len(f) > 1 && strings.HasSuffix(f[1], "/bin/java") {
				var pid int
				for _, c := range p[:strings.Index(p, ":")] {
					pid = pid*10 + int(c-'0')
				}
				pids = append(pids, pid)
			}
		}
		if len(pids) != 1 {
			t.Fatalf("want one remote server JVM for %s, found %v among %q", ob, pids, processesMentioning("A-server.jar"))
		}
		syscall.Kill(pids[0], syscall.SIGKILL)
		id := aliceSession(t)
		err := waitFor(2*time.Minute, func() bool {
			for _, s := range agent.sessions(t) {
				if s.ID == id && s.Restarts >= 1 && s.State == "ready" {
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Fatalf("the server was not restarted: %v (%+v)", err, agent.sessions(t))
		}
		if r := alice.bazel(t, "build", "//:gen"); r.code != 0 {
			t.Fatalf("build after the restart: exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		ob := alice.outputBase(t)
		pidBytes, err := os.ReadFile(filepath.Join(ob, "server", "server.pid.txt"))
		if err != nil {
			t.Fatal(err)
		}
		r := alice.bazel(t, "shutdown")
		if r.code != 0 {
			t.Fatalf("bazel shutdown: exit %d\n%s", r.code, r.stderr)
		}
		var pid int
		for _, c := range strings.TrimSpace(string(pidBytes)) {
			pid = pid*10 + int(c-'0')
		}
		if err := waitFor(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }); err != nil {
			t.Errorf("proxy %d still runs after shutdown", pid)
		}
		for _, f := range []string{serverdir.CommandPortFile, serverdir.RequestCookieFile, serverdir.ResponseCookieFile, serverdir.ServerInfoFile} {
			if _, err := os.Stat(filepath.Join(ob, "server", f)); err == nil {
				t.Errorf("%s left after shutdown", f)
			}
		}
	})

	t.Run("second proxy reuses the warm session", func(t *testing.T) {
		id := aliceSession(t)
		r := alice.bazel(t, "build", "//:gen")
		if r.code != 0 {
			t.Fatalf("bazel build: exit %d\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "attached to warm session "+id) || strings.Contains(r.stderr, "started session") {
			t.Errorf("second proxy did not reuse session %s:\n%s", id, r.stderr)
		}
	})

	bob := newDeveloper(t, root, "bob", "tok-bob", cp, workspace(marker))
	t.Run("two users isolated", func(t *testing.T) {
		aliceStorage := ""
		for _, s := range agent.sessions(t) {
			if s.ID == aliceSession(t) {
				aliceStorage = s.Storage
			}
		}
		// Bob's build tries to read Alice's files by her paths and by her
		// storage.
		writeFile(t, filepath.Join(bob.workspace, ".bazelrc"), readFile(t, filepath.Join(bob.workspace, ".bazelrc"))+
			"build --action_env=SNOOP_PATHS='"+filepath.Join(alice.workspace, "data.txt")+" "+filepath.Join(aliceStorage, "ws", "data.txt")+"'\n", 0o644)
		// And the agent's tunnel and a service of the host, over the
		// network.
		hostLn, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer hostLn.Close()
		go func() {
			for {
				c, err := hostLn.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		targets := []string{agent.addr, net.JoinHostPort(ns.hostIP, strconv.Itoa(hostLn.Addr().(*net.TCPAddr).Port))}
		writeFile(t, filepath.Join(bob.workspace, ".bazelrc"), readFile(t, filepath.Join(bob.workspace, ".bazelrc"))+
			"build --action_env=NETSNOOP_TARGETS='"+strings.Join(targets, " ")+"'\n", 0o644)
		r := bob.bazel(t, "build", "//:snoop", "//:netsnoop")
		if r.code != 0 {
			t.Fatalf("bob's build: exit %d\n%s", r.code, r.stderr)
		}
		if got := readFile(t, filepath.Join(bob.workspace, "bazel-bin", "snoop.txt")); got != "isolated\n" {
			t.Errorf("bob's sandbox saw alice's files: %q", got)
		}
		want := "refused " + strings.Join(targets, "\nrefused ") + "\n"
		if got := readFile(t, filepath.Join(bob.workspace, "bazel-bin", "netsnoop.txt")); got != want {
			t.Errorf("bob's session reached the agent or the host: %q, want %q", got, want)
		}
		infos := agent.sessions(t)
		if len(infos) != 2 {
			t.Fatalf("want 2 sessions, got %+v", infos)
		}
		if infos[0].UID == infos[1].UID || infos[0].Storage == infos[1].Storage {
			t.Errorf("sessions share a uid or storage: %+v", infos)
		}
		for _, s := range infos {
			st, err := os.Stat(filepath.Join(s.Storage, "ws"))
			if err != nil || st.Mode().Perm() != 0o700 || int(st.Sys().(*syscall.Stat_t).Uid) != s.UID {
				t.Errorf("%s's storage: %v %v, want 0700 owned by %d", s.User, st.Mode(), err, s.UID)
			}
		}
	})

	t.Run("third user refused", func(t *testing.T) {
		mallory := newDeveloper(t, root, "mallory", "tok-mallory", cp, workspace(marker))
		r := mallory.bazel(t, "build", "//:gen")
		if r.code != 34 || !strings.Contains(r.stderr, "forbidden") {
			t.Errorf("mallory's build: exit %d, want 34 and forbidden\n%s", r.code, r.stderr)
		}
		// Even with a certificate of the right CA, nobody but Alice may use
		// her session's tunnel.
		cert, err := ca.Issue(pki.UserIdentity("acme", "t3"), pki.IssueOptions{}) // mallory's token
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(agent.addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientConfig(ca.Pool(), cert, pki.AgentIdentity("acme", "agent-1")))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(context.Background(), rbs.SessionMetadataKey, aliceSession(t))
		tc := tunnelpb.NewTunnelClient(conn)
		stream, err := tc.Run(ctx, &tunnelpb.RunRequest{Request: &commandserverpb.RunRequest{Arg: [][]byte{[]byte("info")}, ClientDescription: "mallory"}})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("mallory's Run on alice's session: %v, want PermissionDenied", err)
		}
		if _, err := tc.Stat(ctx, &tunnelpb.StatRequest{Paths: []string{alice.workspace}}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("mallory's Stat on alice's session: %v, want PermissionDenied", err)
		}
	})

	t.Run("loopback port answers nothing without the cookie", func(t *testing.T) {
		r := alice.bazel(t, "info", "output_base")
		if r.code != 0 {
			t.Fatalf("bazel info: %d\n%s", r.code, r.stderr)
		}
		info, err := serverdir.Read(filepath.Join(alice.outputBase(t), "server"))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(info.Address, grpc.WithTransportCredentials(insecureCreds()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := commandserverpb.NewCommandServerClient(conn)
		if _, err := c.Ping(context.Background(), &commandserverpb.PingRequest{Cookie: "guess"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Ping with a bad cookie: %v", err)
		}
		stream, err := c.Run(context.Background(), &commandserverpb.RunRequest{Cookie: "guess", Arg: [][]byte{[]byte("shutdown")}})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Run with a bad cookie: %v", err)
		}
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
