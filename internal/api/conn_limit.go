package api

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// connLimiter is a listener that keeps at most max connections of one
// client address open. A connection beyond is answered (over plain HTTP)
// with 429 and a JSON body, and closed, without ever reaching the HTTP
// server.
type connLimiter struct {
	net.Listener
	max int
	// plain: the listener's connections speak HTTP directly (no TLS on
	// top), so a refusal can be answered.
	plain   bool
	metrics *edgeMetrics

	mu   sync.Mutex
	open map[string]int
}

const refusedConn = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "

var refusedBody = `{"error":{"code":"` + apiv1.CodeTooMany + `","message":"too many connections from this address"}}` + "\n"

// Accept returns the next connection within the limits.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[host] >= l.max {
			l.mu.Unlock()
			l.metrics.shed.WithLabelValues(shedClientConns).Inc()
			go l.refuse(c)
			continue
		}
		l.open[host]++
		l.mu.Unlock()
		l.metrics.conns.Inc()
		return &limitedConn{Conn: c, release: sync.OnceFunc(func() { l.release(host) })}, nil
	}
}

func (l *connLimiter) refuse(c net.Conn) {
	defer c.Close()
	if !l.plain {
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(refusedConn + strconv.Itoa(len(refusedBody)) + "\r\n\r\n" + refusedBody))
}

func (l *connLimiter) release(host string) {
	l.metrics.conns.Dec()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// limitedConn gives its place back when closed.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// clientHost is the address part of a host:port.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
