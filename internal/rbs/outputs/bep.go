package outputs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
)

// Limits on what one command brings back.
const (
	MaxPaths   = 10_000
	maxBEPLine = 16 << 20
)

// bepEvent is the part of a Build Event Protocol JSON event read here.
type bepEvent struct {
	NamedSetOfFiles *struct {
		Files []bepFile `json:"files"`
	} `json:"namedSetOfFiles"`
	Completed *struct {
		ImportantOutput []bepFile `json:"importantOutput"`
	} `json:"completed"`
	TestResult *struct {
		TestActionOutput []bepFile `json:"testActionOutput"`
	} `json:"testResult"`
}

type bepFile struct {
	URI string `json:"uri"`
}

// ParseBEP reads a --build_event_json_file (one JSON event per line) and
// returns the absolute paths of the top-level output files and test
// outputs it reports, sorted and without duplicates. Only file:// URIs
// with a clean absolute path count; lines that are not events are errors.
func ParseBEP(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBEPLine)
	seen := map[string]bool{}
	var out []string
	add := func(files []bepFile) error {
		for _, f := range files {
			p, ok := filePath(f.URI)
			if !ok || seen[p] {
				continue
			}
			if len(out) >= MaxPaths {
				return fmt.Errorf("more than %d outputs", MaxPaths)
			}
			seen[p] = true
			out = append(out, p)
		}
		return nil
	}
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev bepEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("build events line %d: %w", line, err)
		}
		var err error
		if ev.NamedSetOfFiles != nil {
			err = add(ev.NamedSetOfFiles.Files)
		}
		if err == nil && ev.Completed != nil {
			err = add(ev.Completed.ImportantOutput)
		}
		if err == nil && ev.TestResult != nil {
			err = add(ev.TestResult.TestActionOutput)
		}
		if err != nil {
			return nil, fmt.Errorf("build events: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("build events: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

func filePath(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") {
		return "", false
	}
	p := u.Path
	if p == "" || p[0] != '/' || path.Clean(p) != p || p == "/" {
		return "", false
	}
	return p, true
}
