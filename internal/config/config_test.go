package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type settings struct {
	listen  string
	ttl     time.Duration
	workers int
	labels  []string
}

func newSet(c *settings) *Set {
	s := NewSet("test", io.Discard)
	s.String("config", "", "file")
	s.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address")
	s.DurationVar(&c.ttl, "lease-ttl", 30*time.Second, "ttl")
	s.IntVar(&c.workers, "workers", 1, "n")
	s.Var(ListValue{&c.labels}, "labels", "labels")
	s.Env("listen", "MY_LISTEN")
	return s
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nimbus.yaml")
	os.WriteFile(file, []byte("listen: file:1\nlease-ttl: 10s\nworkers: 3\nlabels: [a, b]\n"), 0o600)
	env := map[string]string{"MY_LISTEN": "env:2", "NIMBUS_WORKERS": "5"}
	var c settings
	s := newSet(&c)
	if err := s.Parse([]string{"--config", file, "--workers", "7"}, func(k string) string { return env[k] }, "config"); err != nil {
		t.Fatal(err)
	}
	if c.listen != "env:2" || c.ttl != 10*time.Second || c.workers != 7 || strings.Join(c.labels, ",") != "a,b" {
		t.Errorf("got %+v", c)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		file, env, want string
		args            []string
	}{
		"unknown file key": {file: "lisen: x\n", want: `unknown setting "lisen"`},
		"bad file value":   {file: "lease-ttl: soon\n", want: "lease-ttl"},
		"bad env value":    {env: "abc", want: "NIMBUS_WORKERS"},
		"bad flag":         {args: []string{"--workers", "many"}, want: "workers"},
		"not yaml":         {file: "{", want: "config file"},
	} {
		t.Run(name, func(t *testing.T) {
			var c settings
			s := newSet(&c)
			args := tc.args
			if tc.file != "" {
				p := filepath.Join(dir, name+".yaml")
				os.WriteFile(p, []byte(tc.file), 0o600)
				args = append(args, "--config", p)
			}
			err := s.Parse(args, func(k string) string {
				if k == "NIMBUS_WORKERS" {
					return tc.env
				}
				return ""
			}, "config")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestSizeValue(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "20GiB": 20 << 30, "1 MiB": 1 << 20, "3KB": 3000, "7B": 7} {
		var n int64
		if err := (SizeValue{&n}).Set(in); err != nil || n != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "x", "20x", "-1", "1.5GiB", "99999999999TiB"} {
		var n int64
		if err := (SizeValue{&n}).Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %d", in, n)
		}
	}
	n := int64(20 << 30)
	if s := (SizeValue{&n}).String(); s != "20GiB" {
		t.Errorf("String = %q", s)
	}
}
