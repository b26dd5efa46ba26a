package proxy

import (
	"sync"

	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
)

// maxChunk is the largest output chunk sent to the client, as Bazel does.
const maxChunk = 8 << 10

// clientStream sends responses to the Bazel client, each with the response
// cookie, splitting output into chunks of at most 8 KiB. Send blocks while
// the client does not read (gRPC flow control), which in turn stops reading
// from the agent.
type clientStream struct {
	mu     sync.Mutex
	stream grpc.ServerStreamingServer[commandserverpb.RunResponse]
	cookie string
}

func (c *clientStream) send(r *commandserverpb.RunResponse) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Cookie = c.cookie
	return c.stream.Send(r)
}

func (c *clientStream) output(stdout, stderr []byte) error {
	for len(stdout) > 0 || len(stderr) > 0 {
		r := &commandserverpb.RunResponse{}
		n := min(len(stdout), maxChunk)
		r.StandardOutput, stdout = stdout[:n], stdout[n:]
		if n == 0 {
			n = min(len(stderr), maxChunk)
			r.StandardError, stderr = stderr[:n], stderr[n:]
		}
		if err := c.send(r); err != nil {
			return err
		}
	}
	return nil
}

// stderrWriter writes progress lines to the client's stderr.
type stderrWriter struct{ c *clientStream }

func (w stderrWriter) Write(p []byte) (int, error) {
	if err := w.c.output(nil, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
