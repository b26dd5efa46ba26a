// Package serverdir reads and writes the handshake files of a Bazel server
// in <output_base>/server: command_port, request_cookie, response_cookie
// and server_info.rawproto. The Nimbus proxy writes them (it stands in for
// the server); the agent reads the ones its sandboxed real server writes.
package serverdir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
)

// File names in the server directory.
const (
	CommandPortFile    = "command_port"
	RequestCookieFile  = "request_cookie"
	ResponseCookieFile = "response_cookie"
	ServerInfoFile     = "server_info.rawproto"
	PidFile            = "server.pid.txt"
)

// maxFileSize bounds what Read accepts from any of the files.
const maxFileSize = 4096

// ErrNotReady means the server has not written its files (yet).
var ErrNotReady = errors.New("server files not written")

// Info is what a server publishes about itself.
type Info struct {
	PID            int
	Address        string // 127.0.0.1:PORT or [::1]:PORT
	RequestCookie  string
	ResponseCookie string
}

// NewCookie returns a fresh random cookie: 32 lowercase hex digits.
func NewCookie() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new cookie: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Write publishes info in dir (created 0700 when missing). The cookies are
// written before the address and server_info.rawproto is renamed into
// place, so a client never reads a half-written handshake.
func Write(dir string, info Info) error {
	if err := ValidateAddress(info.Address); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write server files: %w", err)
	}
	raw, err := proto.Marshal(&commandserverpb.ServerInfo{
		Pid:            int32(info.PID),
		Address:        info.Address,
		RequestCookie:  info.RequestCookie,
		ResponseCookie: info.ResponseCookie,
	})
	if err != nil {
		return fmt.Errorf("write server files: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{RequestCookieFile, []byte(info.RequestCookie)},
		{ResponseCookieFile, []byte(info.ResponseCookie)},
		{CommandPortFile, []byte(info.Address)},
		{ServerInfoFile, raw},
	} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("write server files: %w", err)
		}
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// Read returns what the server in dir published: server_info.rawproto when
// present, otherwise command_port and the cookie files (Bazel 4.x writes
// both). It returns ErrNotReady while files are missing.
func Read(dir string) (Info, error) { return ReadFS(os.DirFS(dir), ".") }

// ReadFS is Read within fsys. The agent reads a sandboxed server's files
// through an os.Root's FS, so a symlink planted there cannot make it read
// anything outside the session's storage.
func ReadFS(fsys fs.FS, dir string) (Info, error) {
	raw, err := readSmall(fsys, path.Join(dir, ServerInfoFile))
	if err == nil {
		return ParseServerInfo(raw)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("read server files: %w", err)
	}
	var parts [3][]byte
	for i, name := range []string{CommandPortFile, RequestCookieFile, ResponseCookieFile} {
		parts[i], err = readSmall(fsys, path.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, ErrNotReady
		}
		if err != nil {
			return Info{}, fmt.Errorf("read server files: %w", err)
		}
	}
	info := Info{
		Address:        strings.TrimSpace(string(parts[0])),
		RequestCookie:  strings.TrimSpace(string(parts[1])),
		ResponseCookie: strings.TrimSpace(string(parts[2])),
	}
	return info, info.validate()
}

// ParseServerInfo decodes the content of server_info.rawproto.
func ParseServerInfo(raw []byte) (Info, error) {
	var si commandserverpb.ServerInfo
	if err := proto.Unmarshal(raw, &si); err != nil {
		return Info{}, fmt.Errorf("parse %s: %w", ServerInfoFile, err)
	}
	info := Info{PID: int(si.GetPid()), Address: si.GetAddress(), RequestCookie: si.GetRequestCookie(), ResponseCookie: si.GetResponseCookie()}
	return info, info.validate()
}

func (info Info) validate() error {
	if err := ValidateAddress(info.Address); err != nil {
		return err
	}
	for _, c := range []string{info.RequestCookie, info.ResponseCookie} {
		if err := validateCookie(c); err != nil {
			return err
		}
	}
	return nil
}

func validateCookie(c string) error {
	if c == "" || len(c) > 256 {
		return fmt.Errorf("server cookie of length %d", len(c))
	}
	for _, r := range c {
		if r < 0x21 || r > 0x7e {
			return errors.New("server cookie has non-printable characters")
		}
	}
	return nil
}

// ValidateAddress checks that addr is a loopback host:port as the Bazel
// client requires (127.0.0.1:, [::1]: or [0:0:0:0:0:0:0:1]:).
func ValidateAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || (ip.To4() != nil && host != "127.0.0.1") {
		return fmt.Errorf("server address %q is not 127.0.0.1 or ::1", addr)
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 || fmt.Sprint(p) != port {
		return fmt.Errorf("server address %q: bad port", addr)
	}
	return nil
}

// Remove deletes the handshake files and the pid file, but only those that
// still hold info's values: a newer server's files are left alone.
func Remove(dir string, info Info) error {
	var errs []error
	check := map[string]string{
		RequestCookieFile:  info.RequestCookie,
		ResponseCookieFile: info.ResponseCookie,
		CommandPortFile:    info.Address,
		PidFile:            fmt.Sprint(info.PID),
	}
	for name, want := range check {
		p := filepath.Join(dir, name)
		got, err := readSmall(os.DirFS(dir), name)
		if err != nil || strings.TrimSpace(string(got)) != want {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	p := filepath.Join(dir, ServerInfoFile)
	if raw, err := readSmall(os.DirFS(dir), ServerInfoFile); err == nil {
		if got, err := ParseServerInfo(raw); err == nil && got == info {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveStale deletes the handshake files whatever they hold, before a new
// server starts in dir.
func RemoveStale(dir string) error {
	var errs []error
	for _, name := range []string{CommandPortFile, RequestCookieFile, ResponseCookieFile, ServerInfoFile, PidFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func readSmall(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileSize)
	}
	return b, nil
}
