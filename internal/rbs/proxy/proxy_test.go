package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
	"github.com/nimbus-build/nimbus/internal/rbs/serverdir"
)

// clientArgs is what Bazel 4.2.3's client passed to java, as captured.
func clientArgs(ob, ws string) []string {
	return []string{
		"-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=" + ob,
		"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Xverify:none",
		"-Djava.library.path=/usr/share/bazel/", "-Dfile.encoding=ISO-8859-1",
		"-jar", "/usr/share/bazel/A-server.jar",
		"--max_idle_secs=10800", "--noshutdown_on_low_sys_mem", "--connect_timeout_secs=30",
		"--output_user_root=" + filepath.Dir(ob), "--install_base=/usr/share/bazel",
		"--install_md5=ee2c1e5edec0411c397a6dd23934bee7", "--output_base=" + ob,
		"--workspace_directory=" + ws, "--default_system_javabase=/usr/lib/jvm/java-17-openjdk-amd64",
		"--failure_detail_out=" + ob + "/failure_detail.rawproto", "--expand_configs_in_place",
		"--idle_server_tasks", "--write_command_log", "--nowatchfs", "--product_name=Bazel",
		"--option_sources=install_Ubase:/etc/bazel/bazelrc",
	}
}

func TestParseServerArgs(t *testing.T) {
	a, err := ParseServerArgs(clientArgs("/home/u/.cache/bazel/_bazel_u/abc", "/home/u/ws"))
	if err != nil {
		t.Fatal(err)
	}
	want := ServerArgs{
		OutputBase: "/home/u/.cache/bazel/_bazel_u/abc", OutputUserRoot: "/home/u/.cache/bazel/_bazel_u",
		InstallBase: "/usr/share/bazel", InstallMD5: "ee2c1e5edec0411c397a6dd23934bee7", Workspace: "/home/u/ws",
		FailureDetailOut: "/home/u/.cache/bazel/_bazel_u/abc/failure_detail.rawproto",
		MaxIdle:          3 * time.Hour, ConnectTimeout: 30 * time.Second,
		StartupOptions: []string{"--noshutdown_on_low_sys_mem", "--expand_configs_in_place", "--idle_server_tasks",
			"--write_command_log", "--nowatchfs", "--product_name=Bazel", "--option_sources=install_Ubase:/etc/bazel/bazelrc"},
	}
	a.JVMFlags, a.ServerFlags = nil, nil
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("ParseServerArgs (-want +got):\n%s", diff)
	}

	for name, argv := range map[string][]string{
		"no jar":        {"-Xmx1g"},
		"relative ob":   {"-jar", "x.jar", "--output_base=rel", "--workspace_directory=/w", "--output_user_root=/o", "--install_md5=x"},
		"no workspace":  {"-jar", "x.jar", "--output_base=/o/x", "--output_user_root=/o", "--install_md5=x"},
		"bad idle":      {"-jar", "x.jar", "--output_base=/o/x", "--workspace_directory=/w", "--output_user_root=/o", "--install_md5=x", "--max_idle_secs=-1"},
		"unclean path":  {"-jar", "x.jar", "--output_base=/o/../x", "--workspace_directory=/w", "--output_user_root=/o", "--install_md5=x"},
		"stray operand": {"-jar", "x.jar", "build"},
	} {
		if _, err := ParseServerArgs(argv); err == nil {
			t.Errorf("%s: accepted %q", name, argv)
		}
	}
	batch := append(clientArgs("/o/x", "/w"), "--batch", "build", "//...")
	if _, err := ParseServerArgs(batch); !errors.Is(err, ErrBatch) {
		t.Errorf("batch mode: %v, want ErrBatch", err)
	}
}

func FuzzParseServerArgs(f *testing.F) {
	f.Add(strings.Join(clientArgs("/o/x", "/w"), "\x00"))
	f.Add("-jar\x00j\x00--batch")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseServerArgs(strings.Split(s, "\x00"))
		if err != nil {
			return
		}
		for _, p := range []string{a.OutputBase, a.Workspace, a.OutputUserRoot} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				t.Fatalf("accepted path %q", p)
			}
		}
		for _, o := range a.StartupOptions {
			name, ok := rbs.StartupFlagName(o)
			if !ok || name == "output_base" || name == "install_base" || strings.HasPrefix(o, "-X") {
				t.Fatalf("passes on %q", o)
			}
		}
	})
}

func TestEnvFilter(t *testing.T) {
	f := newEnvFilter([]string{"MY_TOOL_*", "EXTRA"})
	in := [][]byte{
		[]byte("build"), []byte("--client_env=PATH=/bin"), []byte("--client_env=AWS_SECRET_ACCESS_KEY=x"),
		[]byte("--client_env=LC_ALL=C"), []byte("--client_env=MY_TOOL_HOME=/t"), []byte("--client_env=EXTRA=1"),
		[]byte("--client_env=GITHUB_TOKEN=y"), []byte("//..."), []byte("--"), []byte("--client_env=SECRET=arg"),
	}
	got, dropped := f.filterArgs(in)
	var gotS []string
	for _, a := range got {
		gotS = append(gotS, string(a))
	}
	want := []string{"build", "--client_env=PATH=/bin", "--client_env=LC_ALL=C", "--client_env=MY_TOOL_HOME=/t",
		"--client_env=EXTRA=1", "//...", "--", "--client_env=SECRET=arg"}
	if diff := cmp.Diff(want, gotS); diff != "" || dropped != 2 {
		t.Errorf("filterArgs dropped %d (-want +got):\n%s", dropped, diff)
	}
}

func TestExecPaths(t *testing.T) {
	ob := "/home/u/.cache/bazel/_bazel_u/abc"
	bin := ob + "/execroot/__main__/bazel-out/k8-fastbuild/bin"
	er := &commandserverpb.ExecRequest{
		WorkingDirectory: []byte(bin + "/hello.runfiles/__main__"),
		Argv:             [][]byte{[]byte("/bin/bash"), []byte("-c"), []byte("'" + bin + "/hello' 'world'")},
	}
	want := []string{bin + "/hello", bin + "/hello.runfiles"}
	if diff := cmp.Diff(want, execPaths(er, ob)); diff != "" {
		t.Errorf("execPaths (-want +got):\n%s", diff)
	}
	if got := execPaths(&commandserverpb.ExecRequest{Argv: [][]byte{[]byte("/etc/passwd")}}, ob); len(got) != 0 {
		t.Errorf("paths outside the output base: %v", got)
	}
}

// failingProvider is a working SessionProvider for a control plane that
// refuses everything.
type failingProvider struct{ err error }

func (f failingProvider) GetServer(context.Context, rbs.ServerRequest) (rbs.Endpoint, error) {
	return rbs.Endpoint{}, f.err
}
func (f failingProvider) Heartbeat(context.Context, string) error { return f.err }
func (f failingProvider) Release(context.Context, string) error   { return f.err }

// startProxy serves a proxy for a fake workspace and returns a client
// with the cookies read from the server files, as the Bazel client does.
func startProxy(t *testing.T, provider rbs.SessionProvider, maxIdle time.Duration) (commandserverpb.CommandServerClient, serverdir.Info, string, <-chan error) {
	t.Helper()
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	os.Mkdir(ws, 0o755)
	args, err := ParseServerArgs(clientArgs(filepath.Join(dir, "out", "abc"), ws))
	if err != nil {
		t.Fatal(err)
	}
	args.MaxIdle = maxIdle
	p, err := New(Options{Args: args, Provider: provider})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() { done <- p.Serve(ctx, ln); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	serverDir := filepath.Join(args.OutputBase, "server")
	var info serverdir.Info
	deadline := time.Now().Add(10 * time.Second)
	for {
		// server_info.rawproto (with the pid) is written last: wait for it,
		// not only for the files Bazel 4 reads.
		if info, err = serverdir.Read(serverDir); err == nil && info.PID != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server files: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient(info.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return commandserverpb.NewCommandServerClient(conn), info, serverDir, done
}

func collect(t *testing.T, stream grpc.ServerStreamingClient[commandserverpb.RunResponse], cookie string) (id string, stderr string, last *commandserverpb.RunResponse) {
	t.Helper()
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.GetCookie() != cookie {
			t.Fatalf("response cookie %q, want %q", r.GetCookie(), cookie)
		}
		if len(r.GetStandardError()) > maxChunk || len(r.GetStandardOutput()) > maxChunk {
			t.Errorf("chunk of %d bytes", len(r.GetStandardError()))
		}
		if id == "" {
			id = r.GetCommandId()
		}
		stderr += string(r.GetStandardError())
		last = r
	}
}

func TestProxyProtocol(t *testing.T) {
	long := strings.Repeat("x", 20000)
	c, info, serverDir, done := startProxy(t, failingProvider{errors.New("no agent " + long)}, 0)
	ctx := context.Background()

	// Nothing answers without the cookie.
	if _, err := c.Ping(ctx, &commandserverpb.PingRequest{Cookie: "bad"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Ping with a bad cookie: %v", err)
	}
	if _, err := c.Cancel(ctx, &commandserverpb.CancelRequest{Cookie: "bad"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Cancel with a bad cookie: %v", err)
	}
	resp, err := c.Ping(ctx, &commandserverpb.PingRequest{Cookie: info.RequestCookie})
	if err != nil || resp.GetCookie() != info.ResponseCookie {
		t.Fatalf("Ping: %v, %v", resp, err)
	}
	if info.PID != os.Getpid() {
		t.Errorf("server_info pid %d, want %d", info.PID, os.Getpid())
	}

	// A command the remote side refuses ends with exit 34 and the reason,
	// in chunks of at most 8 KiB, each with the cookie.
	stream, err := c.Run(ctx, &commandserverpb.RunRequest{Cookie: info.RequestCookie, Arg: [][]byte{[]byte("build")}, ClientDescription: "test"})
	if err != nil {
		t.Fatal(err)
	}
	id, stderr, last := collect(t, stream, info.ResponseCookie)
	if id == "" || !last.GetFinished() || last.GetExitCode() != exitRemoteError || !strings.Contains(stderr, long) {
		t.Errorf("refused build: id %q, last %v, stderr of %d bytes", id, last, len(stderr))
	}

	// shutdown ends the proxy and removes its files.
	stream, err = c.Run(ctx, &commandserverpb.RunRequest{Cookie: info.RequestCookie, Arg: [][]byte{[]byte("shutdown")}, ClientDescription: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, last = collect(t, stream, info.ResponseCookie)
	if !last.GetFinished() || last.GetExitCode() != 0 || !last.GetTerminationExpected() {
		t.Errorf("shutdown: %v", last)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop after shutdown")
	}
	for _, f := range []string{serverdir.CommandPortFile, serverdir.RequestCookieFile, serverdir.ResponseCookieFile, serverdir.ServerInfoFile} {
		if _, err := os.Stat(filepath.Join(serverDir, f)); err == nil {
			t.Errorf("%s left after shutdown", f)
		}
	}
}

func TestProxyExitsWhenIdle(t *testing.T) {
	_, _, _, done := startProxy(t, failingProvider{errors.New("unused")}, time.Second)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not exit after max_idle_secs")
	}
}

// FuzzFilterArgs: the client's run arguments, whatever they are, lose only
// disallowed --client_env values before any "--".
func FuzzFilterArgs(f *testing.F) {
	f.Add("build\x00--client_env=PATH=/bin\x00--client_env=TOKEN=x\x00--\x00--client_env=TOKEN=y")
	f.Fuzz(func(t *testing.T, s string) {
		in := [][]byte{}
		for _, a := range strings.Split(s, "\x00") {
			in = append(in, []byte(a))
		}
		out, dropped := newEnvFilter(nil).filterArgs(in)
		if len(out)+dropped != len(in) {
			t.Fatalf("lost arguments: %d + %d != %d", len(out), dropped, len(in))
		}
		// The residue starts at the first "--" after the command, in the
		// arguments as sent (a dropped argument before it moves it in
		// out). out is in, in order, less some --client_env values before
		// it, and never one of TOKEN.
		cut := len(in)
		for i := 1; i < len(in); i++ {
			if string(in[i]) == "--" {
				cut = i
				break
			}
		}
		j := 0
		for i, a := range in {
			if j < len(out) && bytes.Equal(out[j], a) {
				if i < cut && strings.HasPrefix(string(a), "--client_env=TOKEN=") {
					t.Fatalf("kept %q", a)
				}
				j++
				continue
			}
			if i >= cut || !strings.HasPrefix(string(a), "--client_env=") {
				t.Fatalf("dropped %q (argument %d; the residue starts at %d)", a, i, cut)
			}
		}
		if j != len(out) {
			t.Fatalf("out is not in's arguments in order: %q from %q", out, in)
		}
	})
}
