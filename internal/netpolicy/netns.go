package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace held open by a file descriptor: it lives as
// long as the descriptor or a process inside it, and no mount point of it
// exists on the host, so nothing is left behind when the agent dies.
type Netns struct {
	f *os.File
}

// newNetns creates an empty network namespace (only a loopback interface,
// down). It needs CAP_SYS_ADMIN.
func newNetns() (*Netns, error) {
	var ns *Netns
	err := onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			return fmt.Errorf("open new network namespace: %w", err)
		}
		ns = &Netns{f: f}
		return nil
	})
	return ns, err
}

// dupNetns takes hold of an existing namespace through a descriptor of
// its own.
func dupNetns(fd int) (*Netns, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("hold the network namespace: %w", err)
	}
	return &Netns{f: os.NewFile(uintptr(nfd), "netns")}, nil
}

// FD is the namespace's file descriptor (for setns, or nftables' and
// netlink's WithNetNS options). It stays valid until Close.
func (n *Netns) FD() int { return int(n.f.Fd()) }

// Close releases the descriptor; the namespace goes once no process is
// left in it.
func (n *Netns) Close() error { return n.f.Close() }

// Enter moves the calling OS thread into the namespace. The caller must
// hold the thread (runtime.LockOSThread) and must either call the returned
// function to move back, or let the thread end locked.
func (n *Netns) Enter() (restore func() error, err error) {
	return enterNetns(n.FD())
}

// Do runs fn on an OS thread that is inside the namespace, then moves the
// thread back (or retires it if it cannot).
func (n *Netns) Do(fn func() error) error {
	return onLockedThread(func() error {
		restore, err := n.Enter()
		if err != nil {
			return err
		}
		ferr := fn()
		if err := restore(); err != nil {
			return errors.Join(ferr, err)
		}
		return ferr
	})
}

// DialContext opens a connection from inside the namespace: the socket
// belongs to the namespace, the connection to the caller. This is how the
// agent reaches a server a sandbox listens on at its own loopback. The
// address must be numeric: Go resolves names on other goroutines, hence
// other threads, which are in the host's namespace.
func (n *Netns) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s in a sandbox's namespace: the host must be an IP address", address)
	}
	var c net.Conn
	err = n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// onLockedThread runs fn on a locked OS thread. When fn fails to leave the
// thread in the state it found it (restore failed), the error says so and
// the thread is retired: a goroutine that ends locked ends its thread.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return // the thread is retired, locked
		}
		defer host.Close()
		ferr := fn()
		// Put the thread back where it was before giving it back to Go.
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to the host network namespace: %w", err))
			return // retired
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// enterNetns moves the calling (locked) thread into the namespace fd.
func enterNetns(fd int) (restore func() error, err error) {
	host, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		host.Close()
		return nil, fmt.Errorf("enter network namespace: %w", err)
	}
	return func() error {
		defer host.Close()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("return to the host network namespace: %w", err)
		}
		return nil
	}, nil
}

// isExist reports whether err is EEXIST (a name taken).
func isExist(err error) bool { return errors.Is(err, syscall.EEXIST) }
