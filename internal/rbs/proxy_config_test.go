package rbs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProxyConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    ProxyConfig
		wantErr string
	}{
		{in: `{"server":"https://cp.example:8443","credentials":"/home/u/.config/nimbus/credentials.json"}`,
			want: ProxyConfig{Server: "https://cp.example:8443", Credentials: "/home/u/.config/nimbus/credentials.json"}},
		{in: `{"server":"https://cp","credentials":"/c","outputs":"none","client_env":["JAVA_HOME","MY_*"],"debug":true}`,
			want: ProxyConfig{Server: "https://cp", Credentials: "/c", Outputs: OutputsNone, ClientEnv: []string{"JAVA_HOME", "MY_*"}, Debug: true}},
		{in: `{"server":"https://cp","credentials":"/c","unknown":1}`, wantErr: "unknown field"},
		{in: `{"server":"ftp://cp","credentials":"/c"}`, wantErr: "server:"},
		{in: `{"server":"https://cp","credentials":"rel/path"}`, wantErr: "credentials:"},
		{in: `{"server":"https://cp","credentials":"/c","outputs":"all"}`, wantErr: "outputs:"},
		{in: `{"server":"https://cp","credentials":"/c","client_env":["A=B"]}`, wantErr: "client_env:"},
		{in: `{"server":"https://cp","credentials":"/c"} {}`, wantErr: "trailing"},
	}
	for _, tt := range tests {
		got, err := ParseProxyConfig(strings.NewReader(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseProxyConfig(%s) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseProxyConfig(%s): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseProxyConfig(%s) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseProxyConfig(f *testing.F) {
	f.Add(`{"server":"https://cp","credentials":"/c"}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseProxyConfig(strings.NewReader(s))
		if err == nil && c.Validate() != nil {
			t.Fatalf("accepted an invalid config %+v", c)
		}
	})
}

// TestWriteJavabase checks the script the Bazel client will exec: it must
// pass the client's arguments through verbatim, quoting included.
func TestWriteJavabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "java base's")
	out := filepath.Join(t.TempDir(), "args")
	// A stand-in for the nimbus binary that records its arguments.
	recorder := filepath.Join(t.TempDir(), "record.sh")
	os.WriteFile(recorder, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > "+ShellQuote(out)+"\n"), 0o755)
	cfg := ProxyConfig{Server: "https://cp", Credentials: "/c"}
	if err := WriteJavabase(dir, []string{recorder, "rbs", "proxy"}, cfg); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "bin", "java"), "-Xmx1g", "--flag=a b", "it's")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bin/java: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	want := "rbs\nproxy\n--config=" + filepath.Join(dir, JavabaseConfigFile) + "\n-Xmx1g\n--flag=a b\nit's\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("arguments (-want +got):\n%s", diff)
	}
	back, err := LoadProxyConfig(filepath.Join(dir, JavabaseConfigFile))
	if err != nil || !cmp.Equal(back, cfg) {
		t.Errorf("config round trip: %+v, %v", back, err)
	}
	if err := WriteJavabase("relative", []string{recorder}, cfg); err == nil {
		t.Error("relative javabase accepted")
	}
}

func TestAddToBazelrc(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, ".bazelrc"), []byte("build --jobs=4\nstartup --server_javabase=/old\n"), 0o644)
	for i := 0; i < 2; i++ {
		if err := AddToBazelrc(ws, "/new"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(ws, ".bazelrc"))
	if diff := cmp.Diff("build --jobs=4\nstartup --server_javabase=/new\n", string(got)); diff != "" {
		t.Errorf(".bazelrc (-want +got):\n%s", diff)
	}
	fresh := t.TempDir()
	AddToBazelrc(fresh, "/j")
	got, _ = os.ReadFile(filepath.Join(fresh, ".bazelrc"))
	if string(got) != "startup --server_javabase=/j\n" {
		t.Errorf("new .bazelrc = %q", got)
	}
}

func TestPassThroughStartupOptions(t *testing.T) {
	got, err := PassThroughStartupOptions([]string{"--output_base=/x", "--nowatchfs", "--max_idle_secs=5", "--nobatch", "--host_jvm_args=-Xmx9g", "--product_name=Bazel"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"--nowatchfs", "--product_name=Bazel"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := PassThroughStartupOptions([]string{"-Xmx1g"}); err == nil {
		t.Error("JVM flag accepted")
	}
}

func TestRepoHash(t *testing.T) {
	h := RepoHash("laptop", "/home/u/ws")
	if err := ValidateRepoHash(h); err != nil {
		t.Fatal(err)
	}
	if h == RepoHash("other", "/home/u/ws") || h == RepoHash("laptop", "/home/u/ws2") {
		t.Error("hash ignores the host or the path")
	}
	for _, bad := range []string{"", "../x", strings.Repeat("A", 64), strings.Repeat("a", 63)} {
		if ValidateRepoHash(bad) == nil {
			t.Errorf("ValidateRepoHash(%q) accepted", bad)
		}
	}
}
