// Package config builds Nimbus's typed configuration from, in order of
// precedence, command-line flags, environment variables, a YAML file and
// built-in defaults. Every setting is a flag; its environment variable is
// NIMBUS_ followed by the flag's name in upper case with - as _ (unless the
// flag names another), and its key in the file is the flag's name. Unknown
// file keys are errors, and so is any value that does not parse, with a
// message naming the setting.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Set is a flag set whose settings can also come from the environment and
// a file.
type Set struct {
	*flag.FlagSet
	env map[string]string // flag name -> environment variable
}

// NewSet returns an empty Set for a command.
func NewSet(name string, out io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &Set{FlagSet: fs, env: map[string]string{}}
}

// EnvName is the environment variable of a flag.
func (s *Set) EnvName(flagName string) string {
	if e, ok := s.env[flagName]; ok {
		return e
	}
	return "NIMBUS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Env names a different environment variable for a flag.
func (s *Set) Env(flagName, env string) { s.env[flagName] = env }

// Parse applies, lowest first: the defaults already bound, the file named
// by the flag configFlag (if any), the environment (getenv), then args.
func (s *Set) Parse(args []string, getenv func(string) string, configFlag string) error {
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	explicit := map[string]bool{}
	s.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if configFlag != "" {
		path := s.Lookup(configFlag).Value.String()
		if path == "" && getenv != nil {
			path = getenv(s.EnvName(configFlag))
		}
		if path != "" {
			if err := s.applyFile(path, explicit); err != nil {
				return err
			}
		}
	}
	if getenv == nil {
		return nil
	}
	var err error
	s.VisitAll(func(f *flag.Flag) {
		if explicit[f.Name] || err != nil {
			return
		}
		if v := getenv(s.EnvName(f.Name)); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("environment %s: %v", s.EnvName(f.Name), serr)
			}
		}
	})
	return err
}

func (s *Set) applyFile(path string, explicit map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := s.Lookup(k)
		if f == nil {
			return fmt.Errorf("config file %s: unknown setting %q (run with --help for the list)", path, k)
		}
		if explicit[k] {
			continue
		}
		v, err := scalar(doc[k])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, k, err)
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, k, err)
		}
	}
	return nil
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool, int, int64, float64:
		return fmt.Sprint(x), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := scalar(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("must be a string, number, boolean or list of them")
}

// ListValue is a comma-separated list flag.
type ListValue struct{ List *[]string }

func (l ListValue) String() string {
	if l.List == nil {
		return ""
	}
	return strings.Join(*l.List, ",")
}

// Set implements flag.Value.
func (l ListValue) Set(v string) error {
	*l.List = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.List = append(*l.List, p)
		}
	}
	return nil
}

// SizeValue is a byte-size flag: a number with an optional unit (KiB, MiB,
// GiB, TiB, or KB, MB, GB, TB), e.g. "20GiB".
type SizeValue struct{ Size *int64 }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

func (v SizeValue) String() string {
	if v.Size == nil || *v.Size == 0 {
		return "0"
	}
	for _, u := range sizeUnits[:4] {
		if *v.Size%u.mult == 0 {
			return fmt.Sprintf("%d%s", *v.Size/u.mult, u.suffix)
		}
	}
	return fmt.Sprint(*v.Size)
}

// Set implements flag.Value.
func (v SizeValue) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q: want a size such as 20GiB", s)
	}
	*v.Size = n * mult
	return nil
}
