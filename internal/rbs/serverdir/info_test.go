package serverdir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
)

func TestWriteReadRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server")
	info := Info{PID: 42, Address: "127.0.0.1:1234", RequestCookie: "aa", ResponseCookie: "bb"}
	if err := Write(dir, info); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("server dir mode %v, want 0700", st.Mode().Perm())
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(info, got); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{CommandPortFile: "127.0.0.1:1234", RequestCookieFile: "aa", ResponseCookieFile: "bb"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	// Without the rawproto, the plain files are read (Bazel 4.x layout).
	os.Remove(filepath.Join(dir, ServerInfoFile))
	got, err = Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	info.PID = 0
	if diff := cmp.Diff(info, got); diff != "" {
		t.Errorf("Read without rawproto (-want +got):\n%s", diff)
	}
	info.PID = 42
	if err := Write(dir, info); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, PidFile), []byte("42"), 0o600)
	// Another server's cookie is left alone.
	os.WriteFile(filepath.Join(dir, ResponseCookieFile), []byte("other"), 0o600)
	if err := Remove(dir, info); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{ResponseCookieFile}, names); diff != "" {
		t.Errorf("left after Remove (-want +got):\n%s", diff)
	}
	if _, err := Read(t.TempDir()); err != ErrNotReady {
		t.Errorf("Read of empty dir: %v, want ErrNotReady", err)
	}
}

func TestValidateAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80":          true,
		"[::1]:43941":           true,
		"[0:0:0:0:0:0:0:1]:9":   true,
		"127.0.0.2:80":          false,
		"10.0.0.1:80":           false,
		"[::ffff:127.0.0.1]:80": false,
		"localhost:80":          false,
		"127.0.0.1:0":           false,
		"127.0.0.1:http":        false,
		"127.0.0.1:99999":       false,
		"127.0.0.1":             false,
	} {
		if err := ValidateAddress(addr); (err == nil) != ok {
			t.Errorf("ValidateAddress(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func FuzzParseServerInfo(f *testing.F) {
	good, _ := proto.Marshal(&commandserverpb.ServerInfo{Pid: 1, Address: "[::1]:5", RequestCookie: "a", ResponseCookie: "b"})
	f.Add(good)
	f.Add([]byte{0x12, 0x03, 'a', 'b'})
	f.Fuzz(func(t *testing.T, raw []byte) {
		info, err := ParseServerInfo(raw)
		if err != nil {
			return
		}
		if ValidateAddress(info.Address) != nil || info.RequestCookie == "" || info.ResponseCookie == "" {
			t.Fatalf("accepted invalid info %+v", info)
		}
	})
}
