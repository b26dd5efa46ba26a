package githubtest

import (
	"net/http"
	"strings"
)

// Fault makes the emulator answer matching requests with an error instead of
// serving them, e.g. a 502 or a secondary rate limit.
type Fault struct {
	// Method matches the request method; "" matches any.
	Method string
	// PathSuffix matches the end of the request path, e.g.
	// "/generate-jitconfig" or "/access_tokens"; "" matches any.
	PathSuffix string
	// Status is the response status.
	Status int
	// Message is GitHub's "message"; the status text by default.
	Message string
	// Header holds extra response headers, e.g. Retry-After.
	Header http.Header
	// Times is how many requests the fault answers; at least 1.
	Times int
}

// InjectFault answers the next f.Times requests that match f with f's error.
// Faults are tried in the order they were injected.
func (s *Server) InjectFault(f Fault) {
	if f.Times < 1 {
		f.Times = 1
	}
	if f.Message == "" {
		f.Message = http.StatusText(f.Status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.HasSuffix(r.URL.Path, f.PathSuffix) {
			f.Times--
			if f.Times == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f
		}
	}
	return nil
}

func (f *Fault) write(w http.ResponseWriter) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeError(w, f.Status, f.Message)
}
